/**
 * The chunk cache's RAM tier: entries by id within a byte budget, least recently used evicted first (Map order is
 * use order: a hit moves its entry to the end).
 */
export class RamTier<Entry extends {bytes: number}> {
    private readonly entries = new Map<string, Entry>();
    private heldBytes = 0;
    private evicted = 0;

    constructor(readonly budgetBytes: number) {}

    has(id: string): boolean {
        return this.entries.has(id);
    }

    /** The entry, now the most recently used. */
    get(id: string): Entry | undefined {
        const entry = this.entries.get(id);
        if (entry != null) {
            this.entries.delete(id);
            this.entries.set(id, entry);
        }
        return entry;
    }

    /** Keeps `entry` under `id` (replacing one there), evicting the least recently used as the budget needs; false when it is larger than the budget (then nothing is kept under `id`). */
    put(id: string, entry: Entry): boolean {
        this.delete(id);
        if (entry.bytes > this.budgetBytes)
            return false;
        while (this.heldBytes + entry.bytes > this.budgetBytes && this.entries.size > 0) {
            this.delete(this.entries.keys().next().value as string);
            this.evicted++;
        }
        this.entries.set(id, entry);
        this.heldBytes += entry.bytes;
        return true;
    }

    delete(id: string): void {
        const entry = this.entries.get(id);
        if (entry != null) {
            this.entries.delete(id);
            this.heldBytes -= entry.bytes;
        }
    }

    /** Drops every entry whose id starts with `prefix`. */
    deletePrefix(prefix: string): void {
        for (const id of [...this.entries.keys()])
            if (id.startsWith(prefix))
                this.delete(id);
    }

    clear(): void {
        this.entries.clear();
        this.heldBytes = 0;
    }

    get size(): number {
        return this.entries.size;
    }

    get bytes(): number {
        return this.heldBytes;
    }

    get evictions(): number {
        return this.evicted;
    }
}
