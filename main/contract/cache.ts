import {z} from "zod";

const count = z.number().int().nonnegative();

export const CacheTier = z.object({
    entries: count,
    bytes: count,
    /** 0 when the tier is off (no GPU-resident tier on a CPU backend, for instance). */
    budgetBytes: count,
    /** Lookups answered from this tier, and those it could not answer (null where the tier does not count them). */
    hits: count.nullable(),
    misses: count.nullable()
});
export type CacheTier = z.infer<typeof CacheTier>;

/** The chunk KV caches as a whole, since the engine started (hits and misses) and now (entries and bytes). */
export const CacheOverview = z.object({
    gpuResident: CacheTier,
    ram: CacheTier,
    disk: CacheTier,
    /** RAM and disk hits over all lookups; null before the first lookup. */
    hitRate: z.number().min(0).max(1).nullable(),
    /** Bytes the KV codec saved on disk; null until the engine has a codec. */
    codecBytesSaved: count.nullable(),
    evictions: count,
    droppedCorrupt: count
});
export type CacheOverview = z.infer<typeof CacheOverview>;

export const cacheEndpoints = {
    getCacheOverview: {input: z.object({}), output: CacheOverview}
} as const;
