/**
 * The chunk KV cache: the KV of each document chunk, computed alone at positions 0..n-1, kept for reuse by the blend
 * engine. Two tiers, each LRU under a byte budget: RAM (parsed bodies, zero-copy on a hit) and disk
 * (`<dataDir>/kvcache/<fingerprint>/<chunkHash>.wkv`, written to a temp file and renamed, checksummed).
 *
 * A key is the model fingerprint (see {@link modelFingerprint}: the model file's identity plus every context
 * setting that changes the KV layout), the chunk's content hash and the prompt-format version.
 *
 * `.wkv` file: "WEFTKV\0\x01" | u32 format version | u32 header length | JSON header | KV body | sha256(header+body).
 * The body is a llama.cpp sequence-state body (see kv-blob.ts). {@link ChunkKvCache.get} checks magic, version,
 * sizes, key and checksum; a file failing any check is deleted and reported as a miss with its reason. `get` never
 * throws.
 */
import {createHash, randomBytes} from "node:crypto";
import {createReadStream} from "node:fs";
import {mkdir, open, readdir, readFile, rename, rm, stat, utimes} from "node:fs/promises";
import path from "node:path";
import {
    isTransposed, type KvBody, kvBodySize, parseKvBody, serializeKvBody, validateKvBody
} from "./kv-blob.js";

export const wkvMagic = Buffer.from("WEFTKV\0\x01", "latin1");
export const wkvFormatVersion = 1;
const prefixBytes = wkvMagic.byteLength + 8;
const digestBytes = 32;
const maxHeaderBytes = 64 * 1024 * 1024;
const fingerprintEdgeBytes = 1024 * 1024;

// ---------------------------------------------------------------------------------------------------------------
// Model fingerprint

export type ModelFingerprintOptions = {
    modelPath: string;
    /** KV cache element type; Weft keeps its cache in f16 (a quantized KV cache has another layout). */
    kvType?: "f16";
    /** Flash attention on stores V untransposed (v_trans = 0), off stores it transposed. */
    flashAttention: boolean;
    /** Anything else that changes the KV bytes (e.g. the llama.cpp build, a RoPE base override). */
    extra?: Record<string, string | number | boolean | null>;
};

async function hashRange(filePath: string, start: number, end: number): Promise<string> {
    const hash = createHash("sha256");
    if (end > start) {
        for await (const chunk of createReadStream(filePath, {start, end: end - 1}))
            hash.update(chunk as Buffer);
    }
    return hash.digest("hex");
}

/**
 * Identity of a model file plus the context settings that change the KV layout; independent of the context size.
 * Path, size and mtime catch a replaced file cheaply; sha256 of the first and last MiB catches a copy or an edit.
 * Returns 32 hex characters.
 */
export async function modelFingerprint(options: ModelFingerprintOptions): Promise<string> {
    const modelPath = path.resolve(options.modelPath);
    const info = await stat(modelPath);
    const size = info.size;
    const head = await hashRange(modelPath, 0, Math.min(size, fingerprintEdgeBytes));
    const tail = await hashRange(modelPath, Math.max(0, size - fingerprintEdgeBytes), size);
    const extra = Object.fromEntries(Object.entries(options.extra ?? {}).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0));
    const identity = JSON.stringify({
        v: 1, path: modelPath, size, mtimeMs: Math.trunc(info.mtimeMs), head, tail,
        kvType: options.kvType ?? "f16", flashAttention: options.flashAttention, extra
    });
    return createHash("sha256").update(identity).digest("hex").slice(0, 32);
}

// ---------------------------------------------------------------------------------------------------------------
// Types

export type ChunkKey = {
    fingerprint: string;
    /** The chunk's content hash (hex or another filename-safe string). */
    chunkHash: string;
    promptFormatVersion: string | number;
};

export type ChunkKvEntry = {
    /** The chunk's tokens (one per cell, in cell order). */
    tokens: ArrayLike<number>;
    /** The chunk's KV, normally at positions 0..n-1. */
    body: KvBody;
};

export type MissReason =
    | "absent" | "bad-key" | "bad-magic" | "wrong-version" | "truncated" | "bad-header" | "bad-sizes" | "checksum"
    | "wrong-model" | "wrong-chunk" | "wrong-prompt-format" | "bad-body" | "io-error";

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

/** The `.wkv` JSON header. */
export type WkvHeader = {
    fingerprint: string;
    chunkHash: string;
    promptFormatVersion: string;
    nTokens: number;
    tokens: number[];
    nStream: number;
    nLayer: number;
    vTrans: boolean;
    /** Per layer: K [type, rowSize]; V [type, rowSize] or, transposed, [type, elemSize, nEmbd]. */
    layers: {k: [number, number], v: [number, number] | [number, number, number]}[];
    bodyBytes: number;
};

type RamEntry = {tokens: Int32Array, body: KvBody, bytes: number};
type DiskEntry = {bytes: number};

class Miss extends Error {
    constructor(readonly reason: MissReason, detail: string) {
        super(detail);
    }
}

const safeName = /^[A-Za-z0-9_-]{1,128}$/;

function layerShapes(body: KvBody): WkvHeader["layers"] {
    return body.layers.map(({k, v}) => ({
        k: [k.type, k.rowSize],
        v: isTransposed(v) ? [v.type, v.elemSize, v.nEmbd] : [v.type, v.rowSize]
    }));
}

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

    private constructor(private readonly options: ChunkCacheOptions) {
        this.root = path.join(options.dataDir, "kvcache");
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
            throw new Miss("bad-key", `fingerprint ${JSON.stringify(key.fingerprint)} is not a safe file name`);
        if (!safeName.test(key.chunkHash))
            throw new Miss("bad-key", `chunk hash ${JSON.stringify(key.chunkHash)} is not a safe file name`);
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
            return {hit: false, reason: (error as Miss).reason, detail: (error as Miss).message};
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
            if (error instanceof Miss) {
                if (error.reason !== "absent")
                    await this.drop(file, error.reason);
                return {hit: false, reason: error.reason, detail: error.message};
            }
            return {hit: false, reason: "io-error", detail: `reading ${file}: ${(error as Error).message}`};
        }
    }

    private async readFile(file: string, key: ChunkKey): Promise<RamEntry> {
        let bytes: Buffer;
        try {
            bytes = await readFile(file);
        } catch (error) {
            if ((error as NodeJS.ErrnoException).code === "ENOENT") {
                this.forgetDisk(file);
                throw new Miss("absent", "not cached");
            }
            throw error;
        }
        const {header, body, tokens} = decodeWkv(bytes, key);
        return {tokens, body, bytes: header.bodyBytes + 4 * header.nTokens};
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

        const header: WkvHeader = {
            fingerprint: key.fingerprint,
            chunkHash: key.chunkHash,
            promptFormatVersion: String(key.promptFormatVersion),
            nTokens: tokens.length,
            tokens: Array.from(tokens),
            nStream: compact.body.nStream,
            nLayer: compact.body.layers.length,
            vTrans: compact.body.vTrans,
            layers: layerShapes(compact.body),
            bodyBytes: bodyBytes.byteLength
        };
        const headerBytes = Buffer.from(JSON.stringify(header), "utf8");
        const fileBytes = prefixBytes + headerBytes.byteLength + bodyBytes.byteLength + digestBytes;
        if (fileBytes > this.options.diskBudgetBytes)
            return {ram, disk: false, error: `${fileBytes} bytes exceed the disk budget`};

        const file = this.pathOf(key);
        const temp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
        try {
            await mkdir(path.dirname(file), {recursive: true});
            const prefix = Buffer.alloc(prefixBytes);
            wkvMagic.copy(prefix, 0);
            prefix.writeUInt32LE(wkvFormatVersion, wkvMagic.byteLength);
            prefix.writeUInt32LE(headerBytes.byteLength, wkvMagic.byteLength + 4);
            const digest = createHash("sha256").update(headerBytes).update(bodyBytes).digest();
            const handle = await open(temp, "w");
            try {
                await handle.writev([prefix, headerBytes, bodyBytes, digest]);
            } finally {
                await handle.close();
            }
            await rename(temp, file);
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

/**
 * Decodes and validates a `.wkv` file against the key it was looked up by. Throws a {@link Miss}-like error whose
 * `reason` says what failed.
 */
function decodeWkv(bytes: Uint8Array, key: ChunkKey): {header: WkvHeader, body: KvBody, tokens: Int32Array} {
    if (bytes.byteLength < prefixBytes + digestBytes)
        throw new Miss(bytes.byteLength >= wkvMagic.byteLength && !startsWithMagic(bytes) ? "bad-magic" : "truncated",
            `the file has only ${bytes.byteLength} bytes`);
    if (!startsWithMagic(bytes))
        throw new Miss("bad-magic", "not a Weft KV cache file (bad magic)");
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const version = view.getUint32(wkvMagic.byteLength, true);
    if (version !== wkvFormatVersion)
        throw new Miss("wrong-version", `format version ${version}, expected ${wkvFormatVersion}`);
    const headerLength = view.getUint32(wkvMagic.byteLength + 4, true);
    if (headerLength > maxHeaderBytes)
        throw new Miss("bad-sizes", `header length ${headerLength} is implausible`);
    if (prefixBytes + headerLength + digestBytes > bytes.byteLength)
        throw new Miss("truncated", `header of ${headerLength} bytes runs past the end of a ${bytes.byteLength}-byte file`);

    let header: WkvHeader;
    try {
        header = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + prefixBytes, headerLength).toString("utf8")) as WkvHeader;
    } catch (error) {
        throw new Miss("bad-header", `header is not JSON: ${(error as Error).message}`);
    }
    if (!isHeader(header))
        throw new Miss("bad-header", "header lacks required fields");

    const expected = prefixBytes + headerLength + header.bodyBytes + digestBytes;
    if (bytes.byteLength < expected)
        throw new Miss("truncated", `file has ${bytes.byteLength} bytes, header promises ${expected}`);
    if (bytes.byteLength > expected)
        throw new Miss("bad-sizes", `file has ${bytes.byteLength} bytes, header promises ${expected}`);

    const checked = bytes.subarray(prefixBytes, prefixBytes + headerLength + header.bodyBytes);
    const digest = createHash("sha256").update(checked).digest();
    if (!digest.equals(bytes.subarray(expected - digestBytes, expected)))
        throw new Miss("checksum", "checksum mismatch: the file is damaged");

    if (header.fingerprint !== key.fingerprint)
        throw new Miss("wrong-model", `file belongs to model ${header.fingerprint}, expected ${key.fingerprint}`);
    if (header.chunkHash !== key.chunkHash)
        throw new Miss("wrong-chunk", `file holds chunk ${header.chunkHash}, expected ${key.chunkHash}`);
    if (header.promptFormatVersion !== String(key.promptFormatVersion))
        throw new Miss("wrong-prompt-format", `file has prompt format ${header.promptFormatVersion}, expected ${String(key.promptFormatVersion)}`);

    let body: KvBody;
    try {
        body = parseKvBody(bytes.subarray(prefixBytes + headerLength, prefixBytes + headerLength + header.bodyBytes));
    } catch (error) {
        throw new Miss("bad-body", `KV body does not parse: ${(error as Error).message}`);
    }
    if (header.nTokens !== header.tokens.length || header.nTokens !== body.cells.length || header.nLayer !== body.layers.length ||
        header.vTrans !== body.vTrans || header.nStream !== body.nStream || kvBodySize(body) !== header.bodyBytes ||
        JSON.stringify(header.layers) !== JSON.stringify(layerShapes(body)))
        throw new Miss("bad-sizes", "header does not describe the KV body");
    return {header, body, tokens: Int32Array.from(header.tokens)};
}

function startsWithMagic(bytes: Uint8Array): boolean {
    return bytes.byteLength >= wkvMagic.byteLength && wkvMagic.equals(bytes.subarray(0, wkvMagic.byteLength));
}

function isHeader(value: unknown): value is WkvHeader {
    if (value == null || typeof value !== "object")
        return false;
    const h = value as Record<string, unknown>;
    const count = (x: unknown) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
    return typeof h.fingerprint === "string" && typeof h.chunkHash === "string" && typeof h.promptFormatVersion === "string" &&
        count(h.nTokens) && Array.isArray(h.tokens) && h.tokens.every((t) => typeof t === "number" && Number.isInteger(t)) &&
        count(h.nStream) && count(h.nLayer) && typeof h.vTrans === "boolean" && Array.isArray(h.layers) && count(h.bodyBytes);
}
