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

/** Megabytes (10^6 bytes) per second, as disk and network speeds are usually quoted. */
export function formatMBps(bytesPerSecond: number): string {
    const mb = bytesPerSecond / 1_000_000;
    return `${mb < 10 ? oneDecimal.format(mb) : integer.format(mb)} MB/s`;
}

/** The last part of a path, for "/" and "\\" separated paths alike (the renderer has no `path` module). */
export function baseName(filePath: string): string {
    const trimmed = filePath.replace(/[\\/]+$/, "");
    const cut = Math.max(trimmed.lastIndexOf("/"), trimmed.lastIndexOf("\\"));
    return cut === -1 ? trimmed : trimmed.slice(cut + 1);
}

/** `filePath` relative to `folder` when it lies inside it, else unchanged. */
export function relativePath(filePath: string, folder: string): string {
    const root = folder.replace(/[\\/]+$/, "");
    if (filePath.length > root.length + 1 && filePath.startsWith(root) && /[\\/]/.test(filePath[root.length]!))
        return filePath.slice(root.length + 1);
    return filePath;
}

const relative = new Intl.RelativeTimeFormat("en", {numeric: "auto"});
const dateTime = new Intl.DateTimeFormat("en", {dateStyle: "medium", timeStyle: "short"});
const dateOnly = new Intl.DateTimeFormat("en", {dateStyle: "medium"});

/** "just now", "5 minutes ago", "yesterday", then "on Jan 2, 2025"; `now` is for tests. */
export function formatWhen(iso: string, now = Date.now()): string {
    const at = Date.parse(iso);
    if (Number.isNaN(at))
        return iso;
    const seconds = Math.round((at - now) / 1000);
    if (Math.abs(seconds) < 45)
        return "just now";
    const minutes = Math.round(seconds / 60);
    if (Math.abs(minutes) < 60)
        return relative.format(minutes, "minute");
    const hours = Math.round(minutes / 60);
    if (Math.abs(hours) < 24)
        return relative.format(hours, "hour");
    const days = Math.round(hours / 24);
    if (Math.abs(days) < 7)
        return relative.format(days, "day");
    return `on ${dateOnly.format(at)}`;
}

export function formatDateTime(iso: string): string {
    const at = Date.parse(iso);
    return Number.isNaN(at) ? iso : dateTime.format(at);
}

export function plural(count: number, one: string, many = `${one}s`): string {
    return `${formatCount(count)} ${count === 1 ? one : many}`;
}
