import os from "node:os";
import path from "node:path";
import {z} from "zod";
import {UserSettings} from "../contract/index.js";
import {readJsonOr, writeJsonAtomic} from "./json-file.js";

export const Settings = z.object({
    activeModelId: z.string().nullable().default(null),
    embeddingModelId: z.string().nullable().default(null),
    contextSize: z.number().int().min(256).max(131_072).default(4096),
    /** Index what symbolic links inside an added folder point to even when it lies outside that folder. */
    followLinksOutsideFolder: z.boolean().default(false)
}).merge(UserSettings);
export type Settings = z.infer<typeof Settings>;

export function settingsPath(dataDir: string): string {
    return path.join(dataDir, "settings.json");
}

export async function loadSettings(dataDir: string): Promise<Settings> {
    return readJsonOr(settingsPath(dataDir), Settings, Settings.parse({}));
}

export async function saveSettings(dataDir: string, settings: Settings): Promise<void> {
    await writeJsonAtomic(settingsPath(dataDir), settings);
}

/**
 * node-llama-cpp would pick more threads than cores on small machines (4 on 2 cores), which makes a
 * tiny model ~1000x slower, so Weft always passes an explicit count: WEFT_THREADS, else the cores.
 */
export function resolveThreads(flag: number | undefined, env: NodeJS.ProcessEnv = process.env): number {
    if (flag != null && Number.isInteger(flag) && flag > 0)
        return flag;

    const fromEnv = Number.parseInt(env.WEFT_THREADS ?? "", 10);
    if (Number.isInteger(fromEnv) && fromEnv > 0)
        return fromEnv;

    return Math.max(1, os.availableParallelism());
}
