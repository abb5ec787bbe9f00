const integer = new Intl.NumberFormat("en-US", {maximumFractionDigits: 0});
const oneDecimal = new Intl.NumberFormat("en-US", {maximumFractionDigits: 1, minimumFractionDigits: 1});

export function formatCount(value: number): string {
    return integer.format(value);
}

/** Milliseconds: one decimal below 10 ms, whole numbers above, seconds above 10 s. */
export function formatMs(value: number): string {
    if (value >= 10_000)
        return `${oneDecimal.format(value / 1000)} s`;
    return `${value < 10 ? oneDecimal.format(value) : integer.format(value)} ms`;
}

export function formatRate(value: number): string {
    return `${value < 100 ? oneDecimal.format(value) : integer.format(value)} tok/s`;
}

export function formatBytes(value: number): string {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let size = value;
    let unit = 0;
    while (size >= 1024 && unit < units.length - 1) {
        size /= 1024;
        unit++;
    }
    return `${unit === 0 ? integer.format(size) : oneDecimal.format(size)} ${units[unit]}`;
}
