/**
 * A progress bar on stderr: redrawn in place on a terminal, a line per 10% otherwise (logs, CI),
 * so stdout stays clean for answers and --json.
 */
export class ProgressBar {
    private lastDecile = -1;
    private readonly isTty = process.stderr.isTTY === true;

    public constructor(private readonly label: string) {}

    public update(done: number, total: number, detail = ""): void {
        const fraction = total > 0 ? Math.min(1, done / total) : 0;
        if (this.isTty) {
            const width = 28;
            const filled = Math.round(fraction * width);
            process.stderr.write(`\r${this.label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ${detail}\x1b[K`);
            return;
        }

        const decile = Math.floor(fraction * 10);
        if (decile !== this.lastDecile) {
            this.lastDecile = decile;
            process.stderr.write(`${this.label} ${decile * 10}% ${detail}\n`);
        }
    }

    public finish(message: string): void {
        process.stderr.write(this.isTty ? `\r${message}\x1b[K\n` : `${message}\n`);
    }
}

export function formatBytes(bytes: number): string {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
        value /= 1024;
        unit++;
    }
    return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}
