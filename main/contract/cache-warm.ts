import {z} from "zod";
import {EngineErrorShape} from "./errors.js";

const count = z.number().int().nonnegative();

/**
 * Background computing of the chunk KV caches for the active model (after an ingest, a model change, or at start-up
 * in the app and `weft serve`). It runs one chunk at a time and always gives way to questions.
 *
 * - `idle`: nothing to do now (finished, never started, or no model; `reason` says why a pass stopped early)
 * - `running`: computing (or waiting for a question to finish)
 * - `paused`: stopped by the user; `resumeCacheWarm` carries on where it stopped
 * - `unavailable`: this build cannot blend (no patched llama.cpp, no native addon, …); `reason` says why
 */
export const CacheWarmState = z.enum(["idle", "running", "paused", "unavailable"]);
export type CacheWarmState = z.infer<typeof CacheWarmState>;

export const CacheWarmStatus = z.object({
    state: CacheWarmState,
    /** The model the caches are (being) computed for; null before the first pass or without a model. */
    modelId: z.string().nullable(),
    /** Chunks of the current (or last) pass checked so far: already cached, computed now, or failed. */
    done: count,
    /** Chunks in the library when the pass started. */
    total: count,
    /** Chunks whose KV this pass computed (the rest were cached already or failed). */
    computed: count,
    failed: count,
    reason: z.string().optional()
}).refine((status) => status.done <= status.total && status.computed + status.failed <= status.done, {
    message: "computed + failed <= done <= total"
});
export type CacheWarmStatus = z.infer<typeof CacheWarmStatus>;

/** `watchCacheWarm` sends the current status at once, then every change, until the client cancels (then `done`). */
export const CacheWarmEvent = z.discriminatedUnion("type", [
    z.object({type: z.literal("status"), status: CacheWarmStatus}),
    z.object({type: z.literal("done")}),
    z.object({type: z.literal("error"), error: EngineErrorShape})
]);
export type CacheWarmEvent = z.infer<typeof CacheWarmEvent>;
