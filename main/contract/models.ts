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

/**
 * Whether the blend strategies can run on a model: its cached chunk KVs can be re-positioned exactly as llama.cpp
 * would have computed them (its RoPE is one Weft reproduces, no sliding-window layers, …). A model that cannot blend
 * answers with exact prefix reuse; `reason` names the model and says why.
 */
export const ModelBlendSupport = z.object({
    canBlend: z.boolean(),
    reason: z.string().min(1).nullable()
}).refine((support) => support.canBlend === (support.reason == null), "a model that cannot blend says why; one that can has no reason");
export type ModelBlendSupport = z.infer<typeof ModelBlendSupport>;

/** A registered model as listed: its registry entry and whether it can blend (read from the file at listing time). */
export const ListedModel = ModelInfo.extend({blend: ModelBlendSupport});
export type ListedModel = z.infer<typeof ListedModel>;

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
