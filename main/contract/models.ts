import {z} from "zod";
import {CacheWarmStatus} from "./cache-warm.js";

export const ModelInfo = z.object({
    id: z.string(),
    name: z.string(),
    path: z.string(),
    sizeBytes: z.number().int().nonnegative(),
    architecture: z.string().nullable(),
    contextLength: z.number().int().nonnegative().nullable(),
    hasChatTemplate: z.boolean(),
    addedAt: z.string()
});
export type ModelInfo = z.infer<typeof ModelInfo>;

export const EngineStatus = z.object({
    version: z.string(),
    backend: z.enum(["cpu", "cuda", "metal", "vulkan"]).nullable(),
    threads: z.number().int().positive(),
    dataDir: z.string(),
    activeModelId: z.string().nullable(),
    /** The model that embeds chunks for hybrid retrieval; null means full-text retrieval only. */
    embeddingModelId: z.string().nullable(),
    loadedModelId: z.string().nullable(),
    /** Background computing of the chunk KV caches for the active model. */
    cacheWarm: CacheWarmStatus
});
export type EngineStatus = z.infer<typeof EngineStatus>;
