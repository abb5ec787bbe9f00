// Where a chunk's (and the prompt header's) KV comes from for a blend: the chunk cache's RAM or disk tier (the
// controller plans a question's chunks between the disk and recomputing), or computed alone on a small context of the
// same model and cached (a question's new chunks reach the disk after the question).
import {createHash} from "node:crypto";
import {stat} from "node:fs/promises";
import type {LlamaContext, LlamaContextSequence, LlamaModel, Token} from "node-llama-cpp";
import type {ChunkKvStats} from "../../contract/index.js";
import type {ChunkKvCache, ChunkKvEntry} from "../kv/chunk-cache.js";
import type {CodedChunk} from "../kv/chunk-container.js";
import {type KvBody, parseSeqStateMemory, sliceCells} from "../kv/kv-blob.js";
import {KvController} from "../kv/kv-controller.js";
import type {RopeParams} from "../kv/rope-params.js";
import type {StoreFailures} from "../kv/store-failures.js";
import {getContextSequenceState, sequenceIdOf} from "../native/native-addon.js";

/** Bump when the way a chunk's KV is computed changes (BOS handling, tokenization), so old caches miss. */
export const promptFormatVersion = 1;

/**
 * Cells of the small context chunk and header KVs are computed in: the chunker's largest chunk (512 tokens) plus BOS
 * fits, with room to spare. Longer token lists use the chat's own sequence.
 */
const aloneContextSize = 1024;

/** Distinct prompt headers whose KV is kept (the header is the same for every question; a few cover template changes). */
const keptHeaders = 4;

export function tokensHash(tokens: readonly Token[]): string {
    return createHash("sha256").update(Uint32Array.from(tokens)).digest("hex").slice(0, 40);
}

/** No token id: it keeps a lead's end apart from the chunk's start in {@link leadHash}. */
const leadEnd = 0xffffffff;

/** The cache key hash of a chunk's lead version (ChunkKvSource.leadKv): the lead and the chunk's tokens. */
export function leadHash(lead: readonly Token[], tokens: readonly Token[]): string {
    return tokensHash([...lead, leadEnd as Token, ...tokens]);
}

/** A chunk's KV and where it came from. */
export type ChunkKvLoad = {body: KvBody, loadedBytes: number, hit: boolean, source: ChunkKvStats};

/** A chunk's disk container for the splice to decode straight into its cells (ChunkKvCache.getCoded), and its source. */
export type CodedChunkKv = {coded: CodedChunk, source: ChunkKvStats};

/** Which of a question's chunks to recompute rather than read from disk, and the wait the controller expects. */
export type ChunkPlan = {skipDisk: ReadonlySet<number>, wait: {plannedMs: number, scaledMs: number} | null};

/**
 * A cache lookup's answer; a disk read carries its timing for the controller. A miss says when the chunk's file is
 * on disk and the controller chose to recompute it instead (the file then needs no writing).
 */
export type CachedChunkKv = {hit: false, skippedDisk?: boolean} | (ChunkKvLoad & {
    hit: true,
    disk?: {readBytes: number, readMs: number, tokens: number, decode?: {f16Bytes: number, ms: number}}
});


export type ChunkKvSourceParts = {
    model: LlamaModel,
    /** The chat context: the small context copies its KV-relevant settings. */
    context: LlamaContext,
    /** The chat's sequence: used for token lists longer than the small context holds. */
    sequence: LlamaContextSequence,
    cache: ChunkKvCache, threads: number, fingerprint: string, rope: RopeParams, flashAttention: boolean, failures: StoreFailures
};

export class ChunkKvSource {
    /** The prompt header's KV (the same for every question), by token hash. */
    private readonly headers = new Map<string, KvBody>();
    /** Load-or-recompute per chunk on disk, from this session's measured disk, decode and prefill rates. */
    public readonly kvController = new KvController();
    /** A small context of its own for computing chunk and header KVs (see {@link aloneSequence}); made on first use. */
    private alone?: Promise<LlamaContextSequence | null>;
    /** The tail of the queue {@link evaluateAlone} runs its calls in. */
    private aloneQueue: Promise<void> = Promise.resolve();
    /** Set by {@link close}: no small context is made any more. */
    private closed = false;
    /** The disk files of chunks questions computed, written one at a time after the question (see {@link chunkKv}). */
    private diskStores: Promise<void> = Promise.resolve();


    public constructor(private readonly parts: ChunkKvSourceParts) {}

    /**
     * The sequence chunk and header KVs are computed on: a small context of the same model with the chat context's
     * KV-relevant settings (flash attention, batch size, threads), so computing a chunk in the background never clears
     * the chat's sequence, whose prompt the next `prefix` question would reuse. Falls back to the chat's sequence when
     * the small context cannot be made (memory).
     */
    private async aloneSequence(length: number): Promise<LlamaContextSequence> {
        if (length + 1 > aloneContextSize)
            return this.parts.sequence;
        if (this.closed)
            throw new Error("the blend session is closed");

        this.alone ??= this.parts.model.createContext({
            contextSize: aloneContextSize,
            batchSize: Math.min(this.parts.context.batchSize, aloneContextSize),
            threads: this.parts.threads,
            flashAttention: this.parts.flashAttention,
            sequences: 1
        }).then((context) => context.getSequence(), () => null);
        const alone = await this.alone;
        if (alone == null || alone.disposed)
            return this.parts.sequence;
        return alone;
    }

    /**
     * Evaluates tokens on a cleared sequence (see {@link aloneSequence}) without sampling and returns its KV state.
     * One at a time: clearing, evaluating and reading the state are three steps on one sequence, and background warming
     * computes chunks while a question computes its header, so two interleaved calls would read each other's tokens.
     * `ms` is this call's own time, without its wait in the queue (a question starts all its chunks at once).
     */
    private evaluateAlone(tokens: Token[]): Promise<{body: KvBody, ms: number}> {
        const run = this.aloneQueue.then(async () => {
            const sequence = await this.aloneSequence(tokens.length);  // made on first use: not part of a prefill's time
            const startedAt = performance.now();
            await sequence.clearHistory();
            if (tokens.length > 0)
                await sequence.evaluateWithoutGeneratingNewTokens(tokens);

            const body = parseSeqStateMemory(await getContextSequenceState(sequence.context, sequenceIdOf(sequence))).body;
            return {body, ms: performance.now() - startedAt};
        });
        this.aloneQueue = run.then(() => undefined, () => undefined);
        return run;
    }

    /** The chunk cache's key for a chunk's tokens under this model and context settings. */
    private chunkKey(tokens: readonly Token[]) {
        return {fingerprint: this.parts.fingerprint, chunkHash: tokensHash(tokens), promptFormatVersion};
    }

    /** The key of a chunk's lead version (see {@link leadKv}): its lead and its tokens, apart from its plain version's. */
    private leadKey(lead: readonly Token[], tokens: readonly Token[]) {
        return {fingerprint: this.parts.fingerprint, chunkHash: leadHash(lead, tokens), promptFormatVersion};
    }

    /** Whether the cache's RAM or disk tier holds a chunk's lead version, without reading it. */
    public leadCached(lead: readonly Token[], tokens: readonly Token[]): boolean {
        return this.parts.cache.holds(this.leadKey(lead, tokens));
    }

    /**
     * A chunk's *lead version*: its KV computed after `lead`, the tokens a prompt puts before its first source (the
     * header and the label `[1]` with the chunk's path), so the prompt's first source holds exactly a full prefill's
     * KV and needs no repair. From the cache's RAM or disk tier, or computed alone and cached (on disk after the
     * question with `diskLater`). The plain version (after a BOS, {@link chunkKv}) serves every other place: caches
     * computed after a first source's label made two-hop answers worse there (bench/RESULTS.md, session 12).
     * `diskOnly` (background warming) leaves the RAM tier to the plain versions questions read.
     */
    public async leadKv(lead: Token[], tokens: Token[], options: {diskLater?: boolean, diskOnly?: boolean} = {}): Promise<ChunkKvLoad> {
        const key = this.leadKey(lead, tokens);
        const found = await this.lookUp(key, tokens, false);
        if (found.hit) {
            if (found.disk != null)
                this.observeDiskLoads([found]);
            return {body: found.body, loadedBytes: found.loadedBytes, hit: true, source: found.source};
        }
        return this.computeAlone(key, lead, tokens, {...options, toDisk: true});
    }

    /** Whether the cache's RAM or disk tier holds a chunk's KV, without reading it. */
    public cachedAnywhere(tokens: readonly Token[]): boolean {
        return this.parts.cache.holds(this.chunkKey(tokens));
    }

    /** Whether a chunk's KV is on the disk tier, without reading it (background warming skips those cheaply). */
    public async chunkCachedOnDisk(tokens: readonly Token[]): Promise<boolean> {
        return stat(this.parts.cache.pathOf(this.chunkKey(tokens))).then((info) => info.isFile() && info.size > 0, () => false);
    }

    /** The header's KV, evaluated once per distinct header (it is the same for every question). */
    public async headerKv(tokens: Token[]): Promise<KvBody> {
        const key = tokensHash(tokens);
        let body = this.headers.get(key);
        if (body == null) {
            body = (await this.evaluateAlone(tokens)).body;
            if (this.headers.size >= keptHeaders)
                this.headers.delete(this.headers.keys().next().value!);
            this.headers.set(key, body);
        }
        return body;
    }

    /**
     * A chunk's KV from the cache's RAM or disk tier (a disk file read and decoded off the JS thread), or a miss when
     * it is in neither or the controller judges recomputing it sooner (a damaged or unreadable file is a miss too).
     * A disk read comes with its timing for the controller (see {@link observeDiskLoads}).
     */
    public cachedChunkKv(tokens: Token[]): Promise<CachedChunkKv> {
        return this.cachedChunkKvs([tokens])[0]!;
    }

    /**
     * The controller's plan for a question's chunks (KvController.plan): those only on disk are planned together, so
     * where a GPU recomputes while the CPU reads and decodes, some are recomputed to shorten the wait for the rest.
     * `wait` is what the plan expects the load step to take (none: no chunk is only on disk, or the controller's rates
     * are still priors: the first cold question measures them, and a fallback decided on priors would never let it).
     */
    public planChunks(chunks: readonly Token[][]): ChunkPlan {
        const keys = chunks.map((tokens) => this.chunkKey(tokens));
        const coded = this.parts.cache.codecOn;
        const onDisk = chunks.flatMap((tokens, index) => {
            const fileBytes = this.parts.cache.diskOnlyBytes(keys[index]!);
            return fileBytes != null ? [{index, input: {tokens: tokens.length, fileBytes, coded}}] : [];
        });
        const options = {recomputeAlongside: this.recomputeAlongside};
        const choices = this.kvController.plan(onDisk.map((chunk) => chunk.input), options);
        return {
            skipDisk: new Set(onDisk.filter((_, j) => choices[j]!.source === "recompute").map((chunk) => chunk.index)),
            wait: onDisk.length > 0 && this.kvController.ratesMeasured(coded) ? this.kvController.planWaitMs(choices, options) : null
        };
    }

    /**
     * Starts every chunk's load at once, in order, as `plan` says. With `coded`, a chunk whose disk file is a codec
     * container fit to splice as it is comes as that container (the splice decodes it straight into its cells, sparing
     * a decoded copy and the splice's copy of it), and only the others load as before. `cached` is each chunk's lookup
     * for the controller's rates (a coded chunk's is a miss: its decode is timed by the splice); `load` its KV. Both are
     * awaited later, in order: a later one's failure is marked handled meanwhile.
     */
    public startLoads(chunks: readonly Token[][], plan: ChunkPlan, options: {coded: boolean}):
        Array<{cached: Promise<CachedChunkKv>, load: Promise<ChunkKvLoad | CodedChunkKv>}> {
        return chunks.map((tokens, index) => {
            const key = this.chunkKey(tokens);
            const skipDisk = plan.skipDisk.has(index);
            const coded = options.coded && !skipDisk ? this.codedLookUp(key, tokens) : Promise.resolve(null);
            const cached = coded.then((found): Promise<CachedChunkKv> | CachedChunkKv => found != null ? {hit: false} : this.lookUp(key, tokens, skipDisk));
            const load = coded.then((found): Promise<ChunkKvLoad | CodedChunkKv> | CodedChunkKv => found ?? this.chunkKv(tokens, cached, {diskLater: true}));
            cached.catch(() => {});
            load.catch(() => {});
            return {cached, load};
        });
    }

    private async codedLookUp(key: ReturnType<ChunkKvSource["chunkKey"]>, tokens: Token[]): Promise<CodedChunkKv | null> {
        const found = await this.parts.cache.getCoded(key);
        if (found == null || !found.hit)
            return null;  // a damaged file is dropped by now: the load as before misses and computes the chunk
        const bytesRead = found.coded.bytes.byteLength;
        this.kvController.observeDiskRead(bytesRead, found.readMs);
        return {coded: found.coded, source: {kvSource: "disk", codecLevel: found.coded.codecLevel, tokens: tokens.length, bytesRead}};
    }

    /**
     * A coded chunk's KV loaded as before, where a splice could not decode it (the cache's own decode then drops a
     * damaged file and the chunk is computed); the question's stats entry for it, `source`, becomes this load's.
     */
    public async rowsInstead(coded: CodedChunk, source: ChunkKvStats): Promise<KvBody> {
        const load = await this.chunkKv(Array.from(coded.tokens) as Token[]);
        Object.assign(source, load.source);
        return load.body;
    }

    /** {@link cachedChunkKv} for a question's chunks at once (started now, in order), as `plan` says. */
    public cachedChunkKvs(chunks: readonly Token[][], plan: ChunkPlan = this.planChunks(chunks)): Array<Promise<CachedChunkKv>> {
        return chunks.map((tokens, index) => this.lookUp(this.chunkKey(tokens), tokens, plan.skipDisk.has(index)));
    }

    /**
     * Whether recomputing a chunk runs beside reading and decoding others rather than taking the same cores: the model's
     * layers are on a GPU, and the codec decodes on the CPU.
     */
    private get recomputeAlongside(): boolean {
        return this.parts.model.llama.gpu !== false && this.parts.model.gpuLayers > 0;
    }

    private async lookUp(key: ReturnType<ChunkKvSource["chunkKey"]>, tokens: Token[], skipDisk: boolean): Promise<CachedChunkKv> {
        if (skipDisk)
            return {hit: false, skippedDisk: true};
        const found = await this.parts.cache.get(key);
        if (!found.hit)
            return {hit: false};
        const disk = found.tier === "disk" ? {
            readBytes: found.readBytes ?? 0, readMs: found.readMs ?? 0, tokens: tokens.length,
            decode: found.codecLevel != null ? {f16Bytes: found.bytes, ms: found.decodeMs ?? 0} : undefined
        } : undefined;
        return {
            body: found.body, loadedBytes: found.bytes, hit: true, disk,
            source: {kvSource: found.tier, codecLevel: found.tier === "disk" ? found.codecLevel ?? null : null, tokens: tokens.length, bytesRead: found.readBytes ?? 0}
        };
    }

    /**
     * Resolves once a question's loads (started at `startedAt`, at once) are done, having told the controller what
     * they cost (see {@link observeDiskLoads}: each scaled by the batch's wall time over their summed times); never rejects.
     */
    public observeBatch(loads: ReadonlyArray<Promise<CachedChunkKv>>, startedAt: number): Promise<void> {
        return Promise.all(loads).then((done) => {
            const batchMs = performance.now() - startedAt;
            const summedMs = done.reduce((sum, load) => sum + (load.hit && load.disk != null ? load.disk.readMs + (load.disk.decode?.ms ?? 0) : 0), 0);
            this.observeDiskLoads(done, summedMs > 0 ? Math.min(1, batchMs / summedMs) : 1);
        }, () => undefined);
    }

    /**
     * Tells the controller what disk loads cost. Loads that ran at once (a question's chunks) overlap, so each one's
     * read and decode times are scaled by `scale` (the batch's wall time over the sum of its loads' times, at most 1):
     * the controller then weighs a chunk's disk load by what it added to the question's wait.
     */
    public observeDiskLoads(loads: CachedChunkKv[], scale = 1): void {
        for (const load of loads) {
            if (!load.hit || load.disk == null)
                continue;
            this.kvController.observeDiskRead(load.disk.readBytes, load.disk.readMs * scale);
            if (load.disk.decode != null)
                this.kvController.observeDecode(load.disk.decode.f16Bytes, load.disk.tokens, load.disk.decode.ms * scale);
        }
    }

    /**
     * A chunk's KV as computed alone: after a BOS token (so the chunk's first token is not the attention sink),
     * whose cell is then dropped; the chunk's cells sit at positions 1..n. Cached per model fingerprint; a failure to
     * cache it is counted, not thrown (the KV is still good for this question). With `diskLater` (a question waits for
     * it) the disk file is written after this returns, see {@link storesSettled}.
     */
    public async chunkKv(tokens: Token[], cached?: Promise<CachedChunkKv>, options: {diskLater?: boolean} = {}): Promise<ChunkKvLoad> {
        let found: CachedChunkKv;
        if (cached != null) {
            found = await cached;  // its caller tells the controller
        } else {
            found = await this.cachedChunkKv(tokens);
            this.observeDiskLoads([found]);
        }
        if (found.hit)
            return {body: found.body, loadedBytes: found.loadedBytes, hit: true, source: found.source};

        const bos = this.parts.model.tokens.bos;
        // A file the controller skipped is already on disk: encoding and writing it again would only add to the
        // question's wait (a 512-token chunk of an 8B model is 64 MiB of f16: about 70 ms to encode on 16 threads
        // at the codec's ~60 MB/s per thread, where an H200 prefills it in about 25 ms).
        return this.computeAlone(this.chunkKey(tokens), bos != null ? [bos] : [], tokens, {...options, toDisk: found.skippedDisk !== true});
    }

    /**
     * Computes `tokens` after `prefix` on the small context, keeps the chunk's cells (positions prefix.length..) and
     * caches them under `key`: in RAM now and on disk after the files queued before it with `diskLater`, on both now
     * otherwise (or in RAM only when not `toDisk`; on disk only with `diskOnly`).
     */
    private async computeAlone(key: ReturnType<ChunkKvSource["chunkKey"]>, prefix: readonly Token[], tokens: Token[],
        options: {diskLater?: boolean, toDisk: boolean, diskOnly?: boolean}): Promise<ChunkKvLoad> {
        const {body: full, ms: prefillMs} = await this.evaluateAlone([...prefix, ...tokens]);
        this.kvController.observePrefill(prefix.length + tokens.length, prefillMs);
        const order = full.cells.map((cell, index) => ({pos: cell.pos, index})).sort((a, b) => a.pos - b.pos);
        if (order.some((entry, index) => entry.index !== index))
            throw new Error("a fresh sequence's cells are not in position order; cannot slice the chunk out");

        const body = sliceCells(full, prefix.length, full.cells.length);
        const entry = {tokens: Int32Array.from(tokens), body, rope: this.parts.rope};
        const toDisk = options.toDisk;
        if (options.diskLater === true && toDisk) {
            // For the same reason a question's new chunk goes to the RAM tier now and to disk after the files queued
            // before it (the codec's encode, then the write): off the question's path, one encode at a time.
            await this.store(key, entry, {disk: false});
            this.diskStores = this.diskStores.then(() => this.store(key, entry, {ram: "leave"}));
        } else {
            await this.store(key, entry, {disk: toDisk, ...(options.diskOnly === true ? {ram: false} : {})});
        }
        return {body, loadedBytes: 0, hit: false, source: {kvSource: "recompute", codecLevel: null, tokens: tokens.length, bytesRead: 0}};
    }

    /** Resolves once the disk files queued so far by {@link chunkKv} are written (or have failed, counted). */
    public storesSettled(): Promise<void> {
        return this.diskStores;
    }

    /**
     * Lets the queued computations and disk writes finish, then disposes the small context of its own. Each context
     * holds its model open, and node-llama-cpp disposes a model's contexts when the model goes only through weak
     * references: once a session was dropped without closing and collected, its context kept model.dispose() waiting
     * for good (a test's suite that failed now and then, after every test had passed).
     */
    public async close(): Promise<void> {
        this.closed = true;
        await this.aloneQueue.catch(() => undefined);
        await this.diskStores;
        const alone = await this.alone;
        this.alone = undefined;
        if (alone != null && !alone.context.disposed)
            await alone.context.dispose();
    }

    /** Puts a computed chunk in the cache; a failure is counted, not thrown (the KV is still good for this question). */
    private async store(key: ReturnType<ChunkKvSource["chunkKey"]>, entry: ChunkKvEntry, tiers: {ram?: boolean | "leave", disk?: boolean}): Promise<void> {
        try {
            const stored = await this.parts.cache.put(key, entry, tiers);
            if (stored.error != null)
                this.parts.failures.record("chunkCachePut", new Error(stored.error));
        } catch (error) {
            this.parts.failures.record("chunkCachePut", error);
        }
    }
}
