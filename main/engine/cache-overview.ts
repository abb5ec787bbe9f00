import type {CacheOverview} from "../contract/index.js";
import type {ChunkCacheStats} from "./kv/chunk-cache.js";
import type {ResidentTierStats} from "./kv/resident-tier.js";

/**
 * The Cache view's totals from the chunk cache's counters and the loaded model's GPU-resident tier (none when no
 * model is loaded or the backend has no such tier). The codec does not exist yet: its savings stay null.
 */
export function cacheOverview(chunks: ChunkCacheStats, resident: ResidentTierStats | null): CacheOverview {
    const hits = chunks.ram.hits + chunks.disk.hits;
    // A RAM miss goes on to the disk tier, so the disk's misses are the lookups nothing answered.
    const lookups = hits + chunks.disk.misses;
    return {
        gpuResident: {
            entries: resident?.entries ?? 0, bytes: resident?.bytes ?? 0, budgetBytes: resident?.budgetBytes ?? 0, hits: null, misses: null
        },
        ram: {entries: chunks.ram.entries, bytes: chunks.ram.bytes, budgetBytes: chunks.ram.budgetBytes, hits: chunks.ram.hits, misses: chunks.ram.misses},
        disk: {
            entries: chunks.disk.entries, bytes: chunks.disk.bytes, budgetBytes: chunks.disk.budgetBytes, hits: chunks.disk.hits,
            misses: chunks.disk.misses
        },
        hitRate: lookups > 0 ? hits / lookups : null,
        codecBytesSaved: null,
        evictions: chunks.ram.evictions + chunks.disk.evictions,
        droppedCorrupt: chunks.droppedCorrupt
    };
}
