import {z} from "zod";

export const Backend = z.enum(["cpu", "cuda", "metal", "vulkan"]);
export type Backend = z.infer<typeof Backend>;

/**
 * How the prompt's KV cache was obtained: `full` prefill, exact `prefix` reuse, or one of the blend strategies
 * (`naive`, `chunk-head`, `hkvd`), which fall back to `prefix` where the blend path cannot run.
 */
export const Strategy = z.enum(["full", "prefix", "naive", "chunk-head", "hkvd"]);
export type Strategy = z.infer<typeof Strategy>;

/** What a question may ask for: a strategy, or `auto` (the engine's measured default; see main/engine/blend/auto.ts). */
export const RequestedStrategy = z.enum(["auto", ...Strategy.options]);
export type RequestedStrategy = z.infer<typeof RequestedStrategy>;

const count = z.number().int().nonnegative();
const ms = z.number().nonnegative();

/** Where a retrieved chunk's KV came from: the GPU-resident tier, the RAM or disk tier of the chunk cache, or computed from its text. */
export const KvSource = z.enum(["resident", "ram", "disk", "recompute"]);
export type KvSource = z.infer<typeof KvSource>;

/** One retrieved chunk's KV, in prompt order. `codecLevel` is the KV codec level its disk copy was stored at (null: raw f16 or not from disk). */
export const ChunkKvStats = z.object({
    kvSource: KvSource,
    codecLevel: z.number().int().nonnegative().nullable(),
    tokens: count,
    /** Bytes read from disk for it (0 unless kvSource is disk). */
    bytesRead: count
});
export type ChunkKvStats = z.infer<typeof ChunkKvStats>;

/**
 * Per-answer statistics. Units are in the names.
 * Invariant: reusedTokens + recomputedTokens + freshTokens === promptTokens.
 */
export const AnswerStats = z.object({
    backend: Backend,
    modelId: z.string(),
    strategy: Strategy,
    /** The share of the chunk tokens the strategy aims to recompute, focus included (hkvd, chunk-head); 0 for the others. */
    ratio: z.number().min(0).max(1),
    /** Why the engine used a different strategy than the one asked for, if it did. */
    strategyFallbackReason: z.string().optional(),
    promptTokens: count,
    /** Prompt tokens whose KV came from a cache without recompute. */
    reusedTokens: count,
    /** Prompt tokens whose KV came from a cache and was recomputed. */
    recomputedTokens: count,
    /** Prompt tokens evaluated from scratch. */
    freshTokens: count,
    completionTokens: count,
    /** KV cache bytes loaded from the chunk cache for this prompt. */
    kvBytesLoaded: count,
    kvLoadMs: ms,
    /** kvBytesLoaded / kvLoadMs in GB/s; 0 when nothing was loaded. */
    kvLoadGBps: z.number().nonnegative(),
    /** KV bytes placed from the GPU-resident tier by device-to-device copies (not part of kvBytesLoaded), and how long that took. */
    kvResidentBytes: count,
    kvResidentMs: ms,
    /** Per retrieved chunk, where its KV came from (blend strategies only). */
    chunkKv: z.array(ChunkKvStats).optional(),
    /**
     * The sources ([n]) the question is about, which hkvd and chunk-head recompute whole (or take exact as cached, see
     * exactSources): the one sharing its rarest words, the one continuing it in its document, the one linked to it by
     * a name.
     */
    focusSources: z.array(z.number().int().positive()).optional(),
    /**
     * The sources ([n]) whose KV came as their lead version (the first source, computed after the header and its own
     * label): exactly a full prefill's KV, reused without repair even when the question is about them.
     */
    exactSources: z.array(z.number().int().positive()).optional(),
    /** Bytes read from the disk tier for this prompt (compressed when the codec stored them). */
    kvBytesRead: count.optional(),
    /** Choosing the tokens to recompute (hkvd's early-layer pass). */
    selectMs: ms,
    recomputeMs: ms,
    /** What a full prefill of promptTokens would have taken, from this model's measured prefill rate. */
    fullPrefillEstimateMs: ms,
    /** Time spent loading the model for this answer (0 when it was already loaded); part of ttftMs. */
    modelLoadMs: ms,
    retrievalMs: ms,
    prefillMs: ms,
    /** From the request to the first generated token, model loading and retrieval included. */
    ttftMs: ms,
    totalMs: ms,
    tokensPerSecond: z.number().nonnegative()
}).superRefine((stats, ctx) => {
    if (stats.reusedTokens + stats.recomputedTokens + stats.freshTokens !== stats.promptTokens)
        ctx.addIssue({
            code: z.ZodIssueCode.custom,
            message: `reusedTokens + recomputedTokens + freshTokens (${
                stats.reusedTokens + stats.recomputedTokens + stats.freshTokens
            }) must equal promptTokens (${stats.promptTokens})`
        });
});
export type AnswerStats = z.infer<typeof AnswerStats>;

/** Sent mid-stream once the prompt is in the KV cache, before the first token. */
export const CacheStats = z.object({
    strategy: Strategy,
    promptTokens: count,
    reusedTokens: count,
    recomputedTokens: count,
    freshTokens: count,
    prefillMs: ms
});
export type CacheStats = z.infer<typeof CacheStats>;
