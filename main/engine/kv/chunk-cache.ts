/**
 * The chunk KV cache: the KV of each document chunk, computed alone after a BOS (so at positions 1..n), kept for reuse by the blend
 * engine. Two tiers, each LRU under a byte budget: RAM (parsed bodies, zero-copy on a hit) and disk
 * (`<dataDir>/kvcache/<fingerprint>/<chunkHash>.wkv`, written to a temp file and renamed, checksummed).
 *
 * A key is the model fingerprint (fingerprint.ts: the model file's identity plus every context
 * setting that changes the KV layout), a hash of the chunk's token ids (not of its text: the tokenizer is part of it) and
 * the prompt-format version.
 *
 * The `.wkv` file format is in wkv-file.ts. {@link ChunkKvCache.get} decodes and checks each file; a file failing any
 * check is deleted and reported as a miss with its reason. `get` never throws.
 */
import {randomBytes} from "node:crypto";
import {mkdir, open, readdir, rename, rm, stat, utimes} from "node:fs/promises";
import path from "node:path";
import {type KvBody, parseKvBody, serializeKvBody, validateKvBody} from "./kv-blob.js";
import {chunkContainerMagic, type CodedChunk, containerF16Bytes, decodeChunkContainer, encodeChunkContainer, kvValueBytes, peekChunkContainer} from "./chunk-container.js";
import type {RopeParams} from "./rope-params.js";
import {loadNativeAddon} from "../native/native-addon.js";
import {type ChunkKey, encodeWkv, type MissReason, WkvMiss} from "./wkv-file.js";
import {LayoutAnchors, readCacheFile} from "./wkv-open.js";
import {RamTier} from "./ram-tier.js";

export {modelFingerprint, type ModelFingerprintOptions} from "./fingerprint.js";
export {type ChunkKey, type MissReason, type WkvHeader, wkvFormatVersion, wkvMagic} from "./wkv-file.js";


// ---------------------------------------------------------------------------------------------------------------
// Types

export type ChunkKvEntry = {
    /** The chunk's tokens (one per cell, in cell order). */
    tokens: ArrayLike<number>;
    /** The chunk's KV, at positions 1..n (computed after a BOS whose cell is dropped). */
    body: KvBody;
    /** The model's RoPE: with the codec on, keys are stored un-rotated (smaller at equal quality). */
    rope?: RopeParams | null;
};

/** A hit shares the cache's own arrays: treat `tokens` and `body` as read-only (rope-shift copies by default). */
export type ChunkKvHit = {
    hit: true, tier: "ram" | "disk", tokens: Int32Array, body: KvBody, bytes: number,
    /** The codec level the disk copy was stored at (absent: raw f16 .wkv). */
    codecLevel?: number,
    /** Bytes read from disk for this hit (disk hits only), the time the read took and the codec's decode. */
    readBytes?: number,
    readMs?: number,
    decodeMs?: number
};
export type ChunkKvMiss = {hit: false, reason: MissReason, detail: string};
export type ChunkKvLookup = ChunkKvHit | ChunkKvMiss;

/** getCoded's answer: a container to decode into cells, a miss (the file dropped where damaged), or null (use get). */
export type CodedLookup = {hit: true, coded: CodedChunk, readMs: number} | ChunkKvMiss | null;

export type ChunkCacheStats = {
    ram: {hits: number, misses: number, entries: number, bytes: number, budgetBytes: number, evictions: number};
    disk: {
        hits: number, misses: number, entries: number, bytes: number, budgetBytes: number, evictions: number,
        writes: number, writeErrors: number,
        /** What the files' KV takes as f16: `f16Bytes - bytes` is what the KV codec saves on disk. */
        f16Bytes: number
    };
    /** Files deleted because they failed validation (any reason but "absent"). */
    droppedCorrupt: number;
    dropReasons: Partial<Record<MissReason, number>>;
};

export type ChunkCacheOptions = {
    dataDir: string;
    /** RAM tier budget; 0 disables the tier. */
    ramBudgetBytes: number;
    /** Disk tier budget; 0 disables the tier (leaving its files alone). Opening with a smaller budget evicts down to it. */
    diskBudgetBytes: number;
    /**
     * Store disk files as the KV codec's container at `level` (kv-codec.ts) where the native addon is loaded, so the
     * disk budget (counted in file bytes) holds several times more chunks; absent or null: raw f16 `.wkv`. Either kind
     * of file is read back whatever the setting.
     */
    codec?: {level: number, threads: number} | null;
};

export type PutResult = {ram: boolean, disk: boolean, error?: string};

type RamEntry = {tokens: Int32Array, body: KvBody, bytes: number, codecLevel?: number, readBytes?: number, readMs?: number, decodeMs?: number};
type DiskEntry = {bytes: number, f16Bytes: number};

const safeName = /^[A-Za-z0-9_-]{1,128}$/;

// ---------------------------------------------------------------------------------------------------------------
// The cache

export class ChunkKvCache {
    readonly root: string;
    private readonly ram: RamTier<RamEntry>;
    /** Path → size; Map order is least recently used first. */
    private readonly disk = new Map<string, DiskEntry>();
    private diskBytes = 0;
    private diskF16Bytes = 0;
    private readonly counters = {
        ramHits: 0, ramMisses: 0,
        diskHits: 0, diskMisses: 0, diskEvictions: 0, diskWrites: 0, diskWriteErrors: 0,
        droppedCorrupt: 0
    };
    private readonly dropReasons: Partial<Record<MissReason, number>> = {};

    private readonly layouts: LayoutAnchors;

    private constructor(private readonly options: ChunkCacheOptions) {
        this.root = path.join(options.dataDir, "kvcache");
        this.layouts = new LayoutAnchors(this.root);
        this.ram = new RamTier(options.ramBudgetBytes);
    }

    /** Opens the cache, indexing the files already on disk (least recently used by mtime) and removing stale temp files. */
    static async open(options: ChunkCacheOptions): Promise<ChunkKvCache> {
        const cache = new ChunkKvCache(options);
        await cache.scan();
        // A budget of 0 turns the tier off; it does not wipe what an earlier run stored.
        if (options.diskBudgetBytes > 0)
            await cache.evictDisk(0);
        return cache;
    }

    private async scan(): Promise<void> {
        let models: string[];
        try {
            models = await readdir(this.root);
        } catch {
            return;
        }
        const found: {file: string, bytes: number, mtimeMs: number}[] = [];
        const now = Date.now();
        for (const model of models) {
            if (!safeName.test(model))
                continue;
            const dir = path.join(this.root, model);
            let names: string[];
            try {
                names = await readdir(dir);
            } catch {
                continue;
            }
            for (const name of names) {
                const file = path.join(dir, name);
                try {
                    const info = await stat(file);
                    if (name.endsWith(".tmp")) {
                        // Another process may be writing it; an hour-old one is a crash's leftover.
                        if (now - info.mtimeMs > 3600_000)
                            await rm(file, {force: true});
                    } else if (name.endsWith(".wkv") && info.isFile()) {
                        found.push({file, bytes: info.size, mtimeMs: info.mtimeMs});
                    }
                } catch {
                    // vanished meanwhile
                }
            }
        }
        found.sort((a, b) => a.mtimeMs - b.mtimeMs);
        for (const {file, bytes} of found) {
            const f16Bytes = await containerF16Bytes(file, bytes);
            this.disk.set(file, {bytes, f16Bytes});
            this.diskBytes += bytes;
            this.diskF16Bytes += f16Bytes;
        }
    }

    /** The `.wkv` path of a key. */
    pathOf(key: ChunkKey): string {
        return path.join(this.root, key.fingerprint, `${key.chunkHash}.wkv`);
    }

    private checkKey(key: ChunkKey): void {
        if (!safeName.test(key.fingerprint))
            throw new WkvMiss("bad-key", `fingerprint ${JSON.stringify(key.fingerprint)} is not a safe file name`);
        if (!safeName.test(key.chunkHash))
            throw new WkvMiss("bad-key", `chunk hash ${JSON.stringify(key.chunkHash)} is not a safe file name`);
    }

    private ramId(key: ChunkKey): string {
        return `${key.fingerprint}/${key.chunkHash}/${String(key.promptFormatVersion)}`;
    }

    /** Looks a chunk up in RAM, then on disk (promoting a disk hit to RAM). Never throws. */
    async get(key: ChunkKey): Promise<ChunkKvLookup> {
        try {
            this.checkKey(key);
        } catch (error) {
            this.counters.ramMisses++;
            this.counters.diskMisses++;
            return {hit: false, reason: (error as WkvMiss).reason, detail: (error as WkvMiss).message};
        }

        const id = this.ramId(key);
        const inRam = this.ram.get(id);
        if (inRam != null) {
            this.counters.ramHits++;
            return {hit: true, tier: "ram", tokens: inRam.tokens, body: inRam.body, bytes: inRam.bytes};
        }
        this.counters.ramMisses++;

        if (this.options.diskBudgetBytes <= 0) {
            this.counters.diskMisses++;
            return {hit: false, reason: "absent", detail: "not in RAM and the disk tier is off"};
        }

        const file = this.pathOf(key);
        try {
            const entry = await this.readFile(file, key);
            await this.diskHit(file);
            this.ram.put(id, entry);
            return {hit: true, tier: "disk", ...entry};
        } catch (error) {
            return this.diskMiss(file, error);
        }
    }

    /**
     * A chunk on the disk tier as its codec container, checked but not decoded, for a splice that decodes it straight
     * into the sequence's cells (chunk-container.ts CodedChunk); the RAM tier is left as it is. Null where RAM holds
     * the chunk, the disk tier is off, or the file needs a decode first (a raw `.wkv`, cells elsewhere): get it then.
     * A damaged or mismatched file is dropped with its reason, as get drops it.
     */
    async getCoded(key: ChunkKey): Promise<CodedLookup> {
        try {
            this.checkKey(key);
        } catch {
            return null;
        }
        // Without the codec the files are raw .wkv: get reads them, once.
        if (this.ram.has(this.ramId(key)) || this.options.diskBudgetBytes <= 0 || !this.codecOn)
            return null;
        const file = this.pathOf(key);
        const startedAt = performance.now();
        try {
            const read = await this.readDisk(file, key);
            const coded = read.kind === "other" ? peekChunkContainer(read.bytes, key) : null;
            if (coded == null)
                return null;
            this.counters.ramMisses++;
            await this.diskHit(file);
            return {hit: true, coded, readMs: performance.now() - startedAt};
        } catch (error) {
            this.counters.ramMisses++;
            return this.diskMiss(file, error);
        }
    }

    private async diskHit(file: string): Promise<void> {
        this.counters.diskHits++;
        const known = this.disk.get(file);
        if (known != null) {
            this.disk.delete(file);
            this.disk.set(file, known);
        }
        const now = new Date();
        await utimes(file, now, now).catch(() => {});
    }

    private async diskMiss(file: string, error: unknown): Promise<ChunkKvMiss> {
        this.counters.diskMisses++;
        if (error instanceof WkvMiss) {
            if (error.reason !== "absent")
                await this.drop(file, error.reason);
            return {hit: false, reason: error.reason, detail: error.message};
        }
        return {hit: false, reason: "io-error", detail: `reading ${file}: ${(error as Error).message}`};
    }

    /**
     * A chunk's file: regular files only, sized by their header before reading, layout and positions checked
     * (wkv-open.ts); a codec container is read whole only within the disk budget, and its decoder checks its shape.
     * A file found gone is forgotten.
     */
    private async readDisk(file: string, key: ChunkKey): ReturnType<typeof readCacheFile> {
        try {
            return await readCacheFile(file, key, await this.layouts.expected(key.fingerprint),
                {magic: chunkContainerMagic, maxBytes: Math.max(0, this.options.diskBudgetBytes)});
        } catch (error) {
            if (error instanceof WkvMiss && error.reason === "absent")
                this.forgetDisk(file);
            throw error;
        }
    }

    private async readFile(file: string, key: ChunkKey): Promise<RamEntry> {
        const readStartedAt = performance.now();
        const read = await this.readDisk(file, key);
        const readMs = performance.now() - readStartedAt;
        if (read.kind === "other") {
            const decodeStartedAt = performance.now();
            const entry = await decodeChunkContainer(read.bytes, key, this.options.codec?.threads ?? 1);
            return {...entry, readMs, decodeMs: performance.now() - decodeStartedAt};
        }
        const {header, body, tokens} = read;
        return {tokens, body, bytes: header.bodyBytes + 4 * header.nTokens, readBytes: header.bodyBytes + 4 * header.nTokens, readMs};
    }

    /** Whether the RAM tier keeps anything (a budget above 0). */
    get keepsInRam(): boolean {
        return this.options.ramBudgetBytes > 0;
    }

    /** Whether RAM holds the chunk or the disk tier indexes its file (a get may still miss: a damaged file is dropped then). */
    holds(key: ChunkKey): boolean {
        return this.ram.has(this.ramId(key)) || (this.options.diskBudgetBytes > 0 && this.disk.has(this.pathOf(key)));
    }

    /** Size of the chunk's disk file when the disk tier indexes one and RAM does not hold the chunk (what a get would read). */
    diskOnlyBytes(key: ChunkKey): number | undefined {
        if (this.ram.has(this.ramId(key)) || this.options.diskBudgetBytes <= 0)
            return undefined;
        try {
            return this.disk.get(this.pathOf(key))?.bytes;
        } catch {
            return undefined;
        }
    }

    /** Whether new disk files are codec containers (which cost a decode on reading). */
    get codecOn(): boolean {
        return this.options.codec != null && loadNativeAddon().available;
    }

    private async drop(file: string, reason: MissReason): Promise<void> {
        this.counters.droppedCorrupt++;
        this.dropReasons[reason] = (this.dropReasons[reason] ?? 0) + 1;
        this.forgetDisk(file);
        await rm(file, {force: true}).catch(() => {});
    }

    private forgetDisk(file: string): void {
        const known = this.disk.get(file);
        if (known != null) {
            this.disk.delete(file);
            this.diskBytes -= known.bytes;
            this.diskF16Bytes -= known.f16Bytes;
        }
    }

    /**
     * Stores a chunk's KV in both tiers (or those chosen). The body is copied into one compact buffer, so the caller
     * may reuse its arrays. Throws only for an invalid key or body; a failed disk write is reported in the result.
     * `ram: false` also drops a RAM copy (it must not shadow the file); `ram: "leave"` leaves the RAM tier as it is
     * (a caller that put this same KV there before writing the file later).
     */
    async put(key: ChunkKey, entry: ChunkKvEntry, tiers: {ram?: boolean | "leave", disk?: boolean} = {}): Promise<PutResult> {
        this.checkKey(key);
        validateKvBody(entry.body);
        if (entry.tokens.length !== entry.body.cells.length)
            throw new Error(`${entry.tokens.length} tokens for ${entry.body.cells.length} KV cells`);

        const bodyBytes = serializeKvBody(entry.body);
        const tokens = Int32Array.from(entry.tokens);
        const compact: RamEntry = {tokens, body: parseKvBody(bodyBytes), bytes: bodyBytes.byteLength + 4 * tokens.length};

        const id = this.ramId(key);
        let ram = false;
        if (tiers.ram === "leave") {
            ram = this.ram.has(id);
        } else if (tiers.ram ?? true) {
            ram = this.ram.put(id, compact);
        } else {
            // Never leave an older RAM copy shadowing what is about to be written.
            this.ram.delete(id);
        }
        if (!(tiers.disk ?? true) || this.options.diskBudgetBytes <= 0)
            return {ram, disk: false};

        // The codec's container where it is on (and the addon loaded), else the raw f16 .wkv.
        const encoded = await encodeChunkContainer(key, compact, this.options.codec, entry.rope ?? null);
        const wkv = encoded == null ? encodeWkv(key, tokens, compact.body, bodyBytes) : null;
        const fileBytes = encoded?.byteLength ?? wkv!.bytes;
        if (fileBytes > this.options.diskBudgetBytes)
            return {ram, disk: false, error: `${fileBytes} bytes exceed the disk budget`};

        const file = this.pathOf(key);
        const temp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
        try {
            await mkdir(path.dirname(file), {recursive: true});
            const handle = await open(temp, "w");
            try {
                await handle.writev(encoded != null ? [encoded] : wkv!.parts);
            } finally {
                await handle.close();
            }
            await rename(temp, file);
            await this.layouts.record(key.fingerprint, compact.body);
        } catch (error) {
            await rm(temp, {force: true}).catch(() => {});
            this.counters.diskWriteErrors++;
            return {ram, disk: false, error: `writing ${file}: ${(error as Error).message}`};
        }
        this.counters.diskWrites++;
        this.forgetDisk(file);
        const f16Bytes = encoded != null ? kvValueBytes(compact.body) : fileBytes;
        this.disk.set(file, {bytes: fileBytes, f16Bytes});
        this.diskBytes += fileBytes;
        this.diskF16Bytes += f16Bytes;
        await this.evictDisk(0, file);
        return {ram, disk: true};
    }

    /** Evicts least recently used files until `extra` more bytes fit the budget (never `keep`). */
    private async evictDisk(extra: number, keep?: string): Promise<void> {
        for (const [file, entry] of [...this.disk]) {
            if (this.diskBytes + extra <= this.options.diskBudgetBytes)
                break;
            if (file === keep)
                continue;
            this.disk.delete(file);
            this.diskBytes -= entry.bytes;
            this.diskF16Bytes -= entry.f16Bytes;
            this.counters.diskEvictions++;
            await rm(file, {force: true}).catch(() => {});
        }
    }

    /** Removes a chunk from both tiers. */
    async delete(key: ChunkKey): Promise<void> {
        this.checkKey(key);
        this.ram.delete(this.ramId(key));
        const file = this.pathOf(key);
        this.forgetDisk(file);
        await rm(file, {force: true});
    }

    /** Removes every chunk of one model fingerprint from both tiers. */
    async deleteModel(fingerprint: string): Promise<void> {
        if (!safeName.test(fingerprint))
            throw new Error(`fingerprint ${JSON.stringify(fingerprint)} is not a safe file name`);
        this.ram.deletePrefix(`${fingerprint}/`);
        const dir = path.join(this.root, fingerprint) + path.sep;
        for (const file of [...this.disk.keys()]) {
            if (file.startsWith(dir))
                this.forgetDisk(file);
        }
        await rm(dir, {recursive: true, force: true});
    }

    /** Empties the RAM tier (the disk tier stays). */
    clearRam(): void {
        this.ram.clear();
    }

    stats(): ChunkCacheStats {
        const c = this.counters;
        return {
            ram: {
                hits: c.ramHits, misses: c.ramMisses, entries: this.ram.size, bytes: this.ram.bytes,
                budgetBytes: this.options.ramBudgetBytes, evictions: this.ram.evictions
            },
            disk: {
                hits: c.diskHits, misses: c.diskMisses, entries: this.disk.size, bytes: this.diskBytes,
                budgetBytes: this.options.diskBudgetBytes, evictions: c.diskEvictions, writes: c.diskWrites,
                writeErrors: c.diskWriteErrors, f16Bytes: this.diskF16Bytes
            },
            droppedCorrupt: c.droppedCorrupt,
            dropReasons: {...this.dropReasons}
        };
    }
}
