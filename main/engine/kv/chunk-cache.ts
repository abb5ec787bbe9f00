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
import {type ChunkKey, encodeWkv, type MissReason, WkvMiss} from "./wkv-file.js";
import {LayoutAnchors, readWkvFile} from "./wkv-open.js";

export {modelFingerprint, type ModelFingerprintOptions} from "./fingerprint.js";
export {type ChunkKey, type MissReason, type WkvHeader, wkvFormatVersion, wkvMagic} from "./wkv-file.js";


// ---------------------------------------------------------------------------------------------------------------
// Types

export type ChunkKvEntry = {
    /** The chunk's tokens (one per cell, in cell order). */
    tokens: ArrayLike<number>;
    /** The chunk's KV, at positions 1..n (computed after a BOS whose cell is dropped). */
    body: KvBody;
};

/** A hit shares the cache's own arrays: treat `tokens` and `body` as read-only (rope-shift copies by default). */
export type ChunkKvHit = {hit: true, tier: "ram" | "disk", tokens: Int32Array, body: KvBody, bytes: number};
export type ChunkKvMiss = {hit: false, reason: MissReason, detail: string};
export type ChunkKvLookup = ChunkKvHit | ChunkKvMiss;

export type ChunkCacheStats = {
    ram: {hits: number, misses: number, entries: number, bytes: number, budgetBytes: number, evictions: number};
    disk: {
        hits: number, misses: number, entries: number, bytes: number, budgetBytes: number, evictions: number,
        writes: number, writeErrors: number
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
};

export type PutResult = {ram: boolean, disk: boolean, error?: string};

type RamEntry = {tokens: Int32Array, body: KvBody, bytes: number};
type DiskEntry = {bytes: number};

const safeName = /^[A-Za-z0-9_-]{1,128}$/;

// ---------------------------------------------------------------------------------------------------------------
// The cache

export class ChunkKvCache {
    readonly root: string;
    private readonly ram = new Map<string, RamEntry>();
    private ramBytes = 0;
    /** Path → size; Map order is least recently used first. */
    private readonly disk = new Map<string, DiskEntry>();
    private diskBytes = 0;
    private readonly counters = {
        ramHits: 0, ramMisses: 0, ramEvictions: 0,
        diskHits: 0, diskMisses: 0, diskEvictions: 0, diskWrites: 0, diskWriteErrors: 0,
        droppedCorrupt: 0
    };
    private readonly dropReasons: Partial<Record<MissReason, number>> = {};

    private readonly layouts: LayoutAnchors;

    private constructor(private readonly options: ChunkCacheOptions) {
        this.root = path.join(options.dataDir, "kvcache");
        this.layouts = new LayoutAnchors(this.root);
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
            this.disk.set(file, {bytes});
            this.diskBytes += bytes;
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
            this.ram.delete(id);
            this.ram.set(id, inRam);
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
            this.counters.diskHits++;
            const known = this.disk.get(file);
            if (known != null) {
                this.disk.delete(file);
                this.disk.set(file, known);
            }
            const now = new Date();
            await utimes(file, now, now).catch(() => {});
            this.putRam(id, entry);
            return {hit: true, tier: "disk", ...entry};
        } catch (error) {
            this.counters.diskMisses++;
            if (error instanceof WkvMiss) {
                if (error.reason !== "absent")
                    await this.drop(file, error.reason);
                return {hit: false, reason: error.reason, detail: error.message};
            }
            return {hit: false, reason: "io-error", detail: `reading ${file}: ${(error as Error).message}`};
        }
    }

    private async readFile(file: string, key: ChunkKey): Promise<RamEntry> {
        try {
            // Regular files only, sized by their header before reading, layout and positions checked (wkv-open.ts).
            const {header, body, tokens} = await readWkvFile(file, key, await this.layouts.expected(key.fingerprint));
            return {tokens, body, bytes: header.bodyBytes + 4 * header.nTokens};
        } catch (error) {
            if (error instanceof WkvMiss && error.reason === "absent")
                this.forgetDisk(file);
            throw error;
        }
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
        }
    }

    private putRam(id: string, entry: RamEntry): boolean {
        const existing = this.ram.get(id);
        if (existing != null) {
            this.ram.delete(id);
            this.ramBytes -= existing.bytes;
        }
        if (entry.bytes > this.options.ramBudgetBytes)
            return false;
        while (this.ramBytes + entry.bytes > this.options.ramBudgetBytes && this.ram.size > 0) {
            const [oldest, victim] = this.ram.entries().next().value as [string, RamEntry];
            this.ram.delete(oldest);
            this.ramBytes -= victim.bytes;
            this.counters.ramEvictions++;
        }
        this.ram.set(id, entry);
        this.ramBytes += entry.bytes;
        return true;
    }

    /**
     * Stores a chunk's KV in both tiers (or those chosen). The body is copied into one compact buffer, so the caller
     * may reuse its arrays. Throws only for an invalid key or body; a failed disk write is reported in the result.
     */
    async put(key: ChunkKey, entry: ChunkKvEntry, tiers: {ram?: boolean, disk?: boolean} = {}): Promise<PutResult> {
        this.checkKey(key);
        validateKvBody(entry.body);
        if (entry.tokens.length !== entry.body.cells.length)
            throw new Error(`${entry.tokens.length} tokens for ${entry.body.cells.length} KV cells`);

        const bodyBytes = serializeKvBody(entry.body);
        const tokens = Int32Array.from(entry.tokens);
        const compact: RamEntry = {tokens, body: parseKvBody(bodyBytes), bytes: bodyBytes.byteLength + 4 * tokens.length};

        const id = this.ramId(key);
        let ram = false;
        if (tiers.ram ?? true) {
            ram = this.putRam(id, compact);
        } else {
            // Never leave an older RAM copy shadowing what is about to be written.
            const stale = this.ram.get(id);
            if (stale != null) {
                this.ram.delete(id);
                this.ramBytes -= stale.bytes;
            }
        }
        if (!(tiers.disk ?? true) || this.options.diskBudgetBytes <= 0)
            return {ram, disk: false};

        const encoded = encodeWkv(key, tokens, compact.body, bodyBytes);
        const fileBytes = encoded.bytes;
        if (fileBytes > this.options.diskBudgetBytes)
            return {ram, disk: false, error: `${fileBytes} bytes exceed the disk budget`};

        const file = this.pathOf(key);
        const temp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
        try {
            await mkdir(path.dirname(file), {recursive: true});
            const handle = await open(temp, "w");
            try {
                await handle.writev(encoded.parts);
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
        this.disk.set(file, {bytes: fileBytes});
        this.diskBytes += fileBytes;
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
            this.counters.diskEvictions++;
            await rm(file, {force: true}).catch(() => {});
        }
    }

    /** Removes a chunk from both tiers. */
    async delete(key: ChunkKey): Promise<void> {
        this.checkKey(key);
        const id = this.ramId(key);
        const inRam = this.ram.get(id);
        if (inRam != null) {
            this.ram.delete(id);
            this.ramBytes -= inRam.bytes;
        }
        const file = this.pathOf(key);
        this.forgetDisk(file);
        await rm(file, {force: true});
    }

    /** Removes every chunk of one model fingerprint from both tiers. */
    async deleteModel(fingerprint: string): Promise<void> {
        if (!safeName.test(fingerprint))
            throw new Error(`fingerprint ${JSON.stringify(fingerprint)} is not a safe file name`);
        for (const [id, entry] of [...this.ram]) {
            if (id.startsWith(`${fingerprint}/`)) {
                this.ram.delete(id);
                this.ramBytes -= entry.bytes;
            }
        }
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
        this.ramBytes = 0;
    }

    stats(): ChunkCacheStats {
        const c = this.counters;
        return {
            ram: {
                hits: c.ramHits, misses: c.ramMisses, entries: this.ram.size, bytes: this.ramBytes,
                budgetBytes: this.options.ramBudgetBytes, evictions: c.ramEvictions
            },
            disk: {
                hits: c.diskHits, misses: c.diskMisses, entries: this.disk.size, bytes: this.diskBytes,
                budgetBytes: this.options.diskBudgetBytes, evictions: c.diskEvictions, writes: c.diskWrites,
                writeErrors: c.diskWriteErrors
            },
            droppedCorrupt: c.droppedCorrupt,
            dropReasons: {...this.dropReasons}
        };
    }
}
