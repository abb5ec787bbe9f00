/** Where storing a chunk's KV can fail without failing the question: both tiers are caches, the answer goes on. */
export type StoreFailureKind = "residentAdmission" | "chunkCachePut";

export type StoreFailureStats = Record<StoreFailureKind, {count: number, lastError: string | null}>;

/**
 * Counts the failures of storing chunk KVs (the resident tier's admissions, the chunk cache's puts), which the answer
 * path does not wait for or does not need: they show in `weft cache stats`, and the first of each kind is logged once
 * (a full disk or device memory would otherwise only show as slower questions).
 */
export class StoreFailures {
    private readonly stats: StoreFailureStats = {
        residentAdmission: {count: 0, lastError: null},
        chunkCachePut: {count: 0, lastError: null}
    };

    public constructor(private readonly warn: (line: string) => void = (line) => console.warn(line)) {}

    public record(kind: StoreFailureKind, error: unknown): void {
        const message = error instanceof Error ? error.message : String(error);
        const entry = this.stats[kind];
        entry.count++;
        entry.lastError = message;
        if (entry.count === 1)
            this.warn(`weft: ${kind === "residentAdmission" ? "a chunk KV could not be kept in the resident tier" : "a chunk KV could not be cached"}: ` +
                `${message} (further failures are counted in \`weft cache stats\`)`);
    }

    public snapshot(): StoreFailureStats {
        return {
            residentAdmission: {...this.stats.residentAdmission},
            chunkCachePut: {...this.stats.chunkCachePut}
        };
    }
}
