import {z} from "zod";
import {Strategy} from "./stats.js";

const GiB = 1024 ** 3;
const bytes = z.number().int().nonnegative().max(1024 * GiB);

/**
 * What the Settings view changes, kept by the engine in `<data>/settings.json`. Every field has a default, so a
 * partial file (or one from an older version) reads as the defaults plus what it has.
 * `null` for threads, GPU layers and the GPU-resident budget means "let the engine choose".
 */
export const UserSettings = z.object({
    /** The strategy questions use; "auto" lets the engine choose (main/engine/blend/auto.ts: chunk-head 0.15 today). */
    strategy: z.enum(["auto", ...Strategy.options]).default("auto"),
    /** The share of the chunk tokens hkvd and chunk-head recompute, their focus chunks included. */
    ratio: z.number().min(0).max(1).default(0.15),
    ramCacheBytes: bytes.min(16 * 1024 ** 2).default(GiB),
    diskCacheBytes: bytes.min(16 * 1024 ** 2).default(8 * GiB),
    residentCacheBytes: bytes.nullable().default(null),
    /** The size chunks are packed to at ingest (they may reach a third more); changed files are chunked with it. */
    chunkTokens: z.number().int().min(64).max(4096).default(384),
    threads: z.number().int().min(1).max(1024).nullable().default(null),
    gpuLayers: z.number().int().min(0).max(1024).nullable().default(null),
    theme: z.enum(["light", "dark", "system"]).default("system")
});
export type UserSettings = z.infer<typeof UserSettings>;

/** Fields that take effect when the engine starts next, not at once. */
export const restartSettings = ["ramCacheBytes", "diskCacheBytes", "residentCacheBytes", "threads", "gpuLayers"] as const satisfies
    readonly (keyof UserSettings)[];

export const SettingsView = z.object({
    settings: UserSettings,
    /** Where the library, caches, conversations and settings live (chosen with --data or WEFT_DATA). */
    dataDir: z.string(),
    /** Saved fields that differ from what the running engine uses until it restarts. */
    pendingRestart: z.array(z.string())
});
export type SettingsView = z.infer<typeof SettingsView>;

export const settingsEndpoints = {
    getSettings: {input: z.object({}), output: SettingsView},
    /** Changes only the fields given; answers with everything as now saved. */
    changeSettings: {input: UserSettings.partial().strict(), output: SettingsView}
} as const;
