/**
 * The hot tier of chunk KVs: the most recently used chunk (and header) KVs kept in buffers of the chat context's
 * own KV cache type, which on a GPU build is GPU memory. A blend then places them with device-to-device copies and
 * lets llama.cpp's K-shift re-position them (native/src/kv_resident.cpp, Weft patch 0002), instead of rotating K on
 * the CPU and copying host to device. LRU under a byte budget; entries belong to one context and die with it.
 */
import type {LlamaContextSequence} from "node-llama-cpp";
import {isTransposed, type KvBody} from "./kv-blob.js";
import {releaseResidentKv, type ResidentKvHandle, type SpliceLayerShape, uploadResidentKv} from "../native/native-addon.js";

export type ResidentEntry = {
    handle: ResidentKvHandle,
    /** Positions the K rows were computed at, one per cell, in cell order. */
    positions: Int32Array,
    bytes: number,
    layers: SpliceLayerShape[]
};

export type ResidentTierStats = {entries: number, bytes: number, budgetBytes: number, admittedBytes: number, evictedBytes: number};

export class ResidentTier {
    private readonly entries = new Map<string, ResidentEntry>();
    private usedBytes = 0;
    private admittedBytes = 0;
    private evictedBytes = 0;

    constructor(readonly budgetBytes: number) {}

    /** The entry for `key`, marked most recently used. */
    get(key: string): ResidentEntry | undefined {
        const entry = this.entries.get(key);
        if (entry != null) {
            this.entries.delete(key);
            this.entries.set(key, entry);
        }
        return entry;
    }

    has(key: string): boolean {
        return this.entries.has(key);
    }

    /** Whether the budget is used up (nothing more fits without evicting). */
    get full(): boolean {
        return this.usedBytes >= this.budgetBytes;
    }

    /**
     * Copies `body` into the tier, evicting the least recently used entries to make room (unless `evict` is false:
     * then only into free room). Skips bodies the tier cannot hold: larger than the budget, transposed V (flash
     * attention off) or empty. Returns whether it was admitted.
     */
    async admit(sequence: LlamaContextSequence, key: string, body: KvBody, options: {evict?: boolean} = {}): Promise<boolean> {
        if (this.entries.has(key) || body.cells.length === 0 || body.vTrans)
            return false;
        const bytes = body.layers.reduce((sum, {k, v}) => sum + k.rows.byteLength + (isTransposed(v) ? v.data.byteLength : v.rows.byteLength), 0);
        if (bytes > this.budgetBytes || (options.evict === false && this.usedBytes + bytes > this.budgetBytes))
            return false;
        while (this.usedBytes + bytes > this.budgetBytes && this.entries.size > 0)
            this.evictOldest();

        const layers = body.layers.map(({k, v}) => {
            if (isTransposed(v))
                throw new Error("unreachable: transposed V");
            return {kType: k.type, kRowSize: k.rowSize, vType: v.type, vRowSize: v.rowSize, k: k.rows, v: v.rows};
        });
        const handle = await uploadResidentKv(sequence, {cellCount: body.cells.length, layers});
        this.entries.set(key, {
            handle,
            positions: Int32Array.from(body.cells, (cell) => cell.pos),
            bytes,
            layers: layers.map(({kType, kRowSize, vType, vRowSize}) => ({kType, kRowSize, vType, vRowSize}))
        });
        this.usedBytes += bytes;
        this.admittedBytes += bytes;
        return true;
    }

    stats(): ResidentTierStats {
        return {entries: this.entries.size, bytes: this.usedBytes, budgetBytes: this.budgetBytes, admittedBytes: this.admittedBytes,
            evictedBytes: this.evictedBytes};
    }

    /** Frees every entry (before the context they belong to goes away). */
    clear(): void {
        while (this.entries.size > 0)
            this.evictOldest();
    }

    private evictOldest(): void {
        const [key, entry] = this.entries.entries().next().value!;
        this.entries.delete(key);
        releaseResidentKv(entry.handle);
        this.usedBytes -= entry.bytes;
        this.evictedBytes += entry.bytes;
    }
}
