/** Thrown inside an adapter to end the parse with this outcome instead of a generic "corrupt" error. */
export class ParseFailure extends Error {
    constructor(readonly outcome: "skipped" | "error", readonly reason: string) {
        super(reason);
    }
}

/** Maps file-system failures to reasons a user can act on; null when `error` is not one of them. */
export function fileErrorReason(error: unknown): string | null {
    const code = (error as NodeJS.ErrnoException | null)?.code;
    switch (code) {
        case "ENOENT":
            return "file disappeared while reading";
        case "EACCES":
        case "EPERM":
            return "permission denied";
        case "EISDIR":
            return "not a regular file";
        case "EMFILE":
        case "ENFILE":
            return "too many open files";
        case "EIO":
            return "I/O error while reading";
        default:
            return null;
    }
}

const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];

/** "512 bytes", "2.0 GiB", "64 MiB": one decimal below 10 units, none above. */
export function formatBytes(bytes: number): string {
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
        value /= 1024;
        unit++;
    }
    if (unit === 0)
        return `${bytes} bytes`;
    return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function formatDuration(ms: number): string {
    return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`;
}

export function errorMessage(error: unknown): string {
    return error instanceof Error ? error.message : String(error);
}
