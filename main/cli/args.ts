import {parseArgs, type ParseArgsConfig} from "node:util";

export class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig["options"]>;

export const commonOptions = {
    data: {type: "string"},
    threads: {type: "string"},
    gpu: {type: "string"},
    json: {type: "boolean"},
    help: {type: "boolean", short: "h"}
} as const satisfies Options;

/** Strict parsing: an unknown flag is a usage error that names the flag, never silently ignored. */
export function parseCommandArgs<O extends Options>(argv: string[], options: O) {
    try {
        return parseArgs({args: argv, options, allowPositionals: true, strict: true});
    } catch (error) {
        const message = (error as Error).message.replace(/^.*?Unknown option/s, "unknown option")
            .replace(/\. To specify a positional argument.*$/s, "");
        throw new UsageError(message);
    }
}

export function parsePositiveInt(value: string | undefined, flag: string): number | undefined {
    if (value == null)
        return undefined;

    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed <= 0)
        throw new UsageError(`${flag} must be a positive whole number, got "${value}"`);

    return parsed;
}

export function parseNumberInRange(value: string | undefined, flag: string, min: number, max: number): number | undefined {
    if (value == null)
        return undefined;

    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed < min || parsed > max)
        throw new UsageError(`${flag} must be a number from ${min} to ${max}, got "${value}"`);

    return parsed;
}

export function parseGpu(value: string | undefined): "auto" | false | "cuda" | "vulkan" | "metal" {
    switch (value) {
        case undefined: case "auto": return "auto";
        case "cpu": case "false": case "off": return false;
        case "cuda": case "vulkan": case "metal": return value;
        default: throw new UsageError(`--gpu must be auto, cpu, cuda, vulkan or metal, got "${value}"`);
    }
}
