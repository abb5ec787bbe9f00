// One blend session per loaded model: sources chunk KVs (the resident tier, the chunk cache, or computing them),
// selects the tokens to recompute, splices the prompt's KV and recomputes (CacheBlend). `full` and `prefix` are in
// prepare.ts; hkvd selects and recomputes in one fused decode (fused.ts, Weft patch 0003).
import {createHash} from "node:crypto";
import {stat} from "node:fs/promises";
import type {Llama, LlamaContext, LlamaContextSequence, LlamaModel, Token} from "node-llama-cpp";
import type {ChunkKvStats} from "../../contract/index.js";
import type {BuiltPrompt} from "../prompt.js";
import type {ChunkKvCache} from "../kv/chunk-cache.js";
import {modelFingerprint} from "../kv/fingerprint.js";
import {type KvBody, parseSeqStateMemory, sliceCells} from "../kv/kv-blob.js";
import {ResidentTier} from "../kv/resident-tier.js";
import type {RopeParams} from "../kv/rope-params.js";
import {StoreFailures} from "../kv/store-failures.js";
import {KvController} from "../kv/kv-controller.js";
import {available, type Capability, unavailable} from "../native/capability.js";
import {type BlendBuild, blendBuildOf} from "../native/llama-loader.js";
import {
    contextInternalsProblem, decodeAtPositions, getContextSequenceState, markTokensEvaluated, type PositionedRun, residentKvSupported,
    sequenceIdOf
} from "../native/native-addon.js";
import {blendSupportOf} from "./blend-support.js";
import {type FusedSegment, fusedBlendUnavailable, runFusedBlend} from "./fused.js";
import type {BlendTrace, PreparedPrompt} from "./prepare.js";
import {type SplicePartInput, spliceIntoSequence, withLabelCells} from "./splice.js";

export type BlendStrategy = "naive" | "chunk-head" | "hkvd";

/** Bump when the way a chunk's KV is computed changes (BOS handling, tokenization), so old caches miss. */
export const promptFormatVersion = 1;

/** The layer hkvd compares fresh and cached K at (CacheBlend's check layer); layers up to it run for every token. */
export const selectionLayer = 1;

/** Default byte budget of the resident tier on a GPU: a quarter of the free VRAM at open, at most 4 GiB. */
export async function defaultResidentBudgetBytes(llama: Llama): Promise<number> {
    if (llama.gpu === false)
        return 0;
    const {free} = await llama.getVramState();
    return Math.min(4 * 1024 ** 3, Math.floor(free / 4));
}

/**
 * Cells of the small context chunk and header KVs are computed in: the chunker's largest chunk (512 tokens) plus BOS
 * fits, with room to spare. Longer token lists use the chat's own sequence.
 */
const aloneContextSize = 1024;

/** Distinct prompt headers whose KV is kept (the header is the same for every question; a few cover template changes). */
const keptHeaders = 4;

export type BlendSessionOptions = {
    llama: Llama, model: LlamaModel, context: LlamaContext, sequence: LlamaContextSequence, modelPath: string,
    cache: ChunkKvCache, threads: number,
    /** How refusals name the model (the registry's name); default its GGUF name or file name. */
    modelName?: string,
    /** What the loader found (llama-loader.ts); checked here when absent. */
    build?: Capability<BlendBuild>,
    /** Byte budget of the resident (GPU) tier; default {@link defaultResidentBudgetBytes}. 0 turns it off. */
    residentBudgetBytes?: number,
    /** Where storing failures are counted (the engine shares one across models); default a fresh one. */
    failures?: StoreFailures
};

/** Per-question options of {@link BlendSession.prepare}. */
export type BlendPrepareOptions = {
    /** Build the spliced state in pinned host memory when a GPU backend is loaded (default; benchmarks compare without). */
    pinned?: boolean;
    /** Where hkvd's fused decode builds its causal mask (default "auto": see FusedBlendSpec.mask); both give the same mask. */
    fusedMask?: "auto" | "host" | "graph";
    trace?: BlendTrace;
};

/**
 * The blend path for one loaded model, or the reason it cannot run here: the patched llama.cpp build must be the one
 * loaded, the native addon must load, node-llama-cpp's context internals must be the expected ones, and the model's
 * RoPE must be one Weft can re-position.
 */
export async function openBlendSession(options: BlendSessionOptions): Promise<Capability<BlendSession>> {
    const build = options.build ?? blendBuildOf(options.llama);
    if (!build.available)
        return build;

    const internals = contextInternalsProblem(options.context);
    if (internals != null)
        return unavailable(internals);

    const support = await blendSupportOf(options.modelPath, options.model.fileInfo, options.modelName != null ? {name: options.modelName} : {});
    if (!support.canBlend)
        return unavailable(support.reason);
    const rope = support.rope;

    const {flashAttention, nStream} = await chatKvLayout(options.sequence, options.model);
    const residentBudgetBytes = options.residentBudgetBytes ?? await defaultResidentBudgetBytes(options.llama);
    return available(new BlendSession({
        model: options.model, context: options.context, sequence: options.sequence, cache: options.cache, threads: options.threads,
        fingerprint: await modelFingerprint({modelPath: options.modelPath, flashAttention}),
        rope, flashAttention, nStream,
        resident: residentBudgetBytes > 0 && flashAttention && residentKvSupported() ? new ResidentTier(residentBudgetBytes) : undefined,
        failures: options.failures ?? new StoreFailures()
    }));
}

/**
 * The chat context's KV layout, read from a one-token state: node-llama-cpp reports its flash-attention default as
 * "auto", which llama.cpp resolves per backend, and V is stored transposed exactly when it is off (the cache
 * fingerprint and the contexts chunk KVs are computed in must match it); the stream count is what a state loaded
 * into this context must declare.
 */
async function chatKvLayout(sequence: LlamaContextSequence, model: LlamaModel): Promise<{flashAttention: boolean, nStream: number}> {
    await sequence.clearHistory();
    await sequence.evaluateWithoutGeneratingNewTokens([model.tokens.bos ?? model.tokenize("a")[0]!]);
    const body = parseSeqStateMemory(await getContextSequenceState(sequence.context, sequenceIdOf(sequence))).body;
    await sequence.clearHistory();
    return {flashAttention: !body.vTrans, nStream: body.nStream};
}

/** The chunk cache's key hash of a token list (the chunk's token ids, not its text: the tokenizer is part of it). */
function tokensHash(tokens: readonly Token[]): string {
    return createHash("sha256").update(Uint32Array.from(tokens)).digest("hex").slice(0, 40);
}

/** A chunk's KV and where it came from. */
export type ChunkKvLoad = {body: KvBody, loadedBytes: number, hit: boolean, source: ChunkKvStats};

/** A cache lookup's answer; a disk read carries its timing for the controller. */
type CachedChunkKv = {hit: false} | (ChunkKvLoad & {
    hit: true,
    disk?: {readBytes: number, readMs: number, tokens: number, decode?: {f16Bytes: number, ms: number}}
});

type SessionParts = {
    model: LlamaModel, context: LlamaContext, sequence: LlamaContextSequence, cache: ChunkKvCache, threads: number,
    fingerprint: string, rope: RopeParams, flashAttention: boolean,
    /** Streams of the chat context's KV cache (a state loaded into it must declare as many). */
    nStream: number,
    resident: ResidentTier | undefined,
    failures: StoreFailures
};

export class BlendSession {
    public readonly model: LlamaModel;
    public readonly context: LlamaContext;
    public readonly sequence: LlamaContextSequence;
    public readonly cache: ChunkKvCache;
    public readonly threads: number;
    public readonly fingerprint: string;
    public readonly rope: RopeParams;
    public readonly flashAttention: boolean;
    public readonly nStream: number;
    public readonly failures: StoreFailures;
    /**
     * The hot tier: chunk and header KVs kept in the KV cache's own memory (GPU memory on a GPU build), placed with
     * device-to-device copies by `naive` and `chunk-head`. Absent where the build lacks patch 0002, with flash
     * attention off (transposed V), or with a zero budget (the default on CPU, where it would only copy RAM to RAM).
     */
    private residentTier: ResidentTier | undefined;
    /** The latest admission into the resident tier (it runs after a blend, off the answer's path); settles, never rejects. */
    private residentAdmission: Promise<void> = Promise.resolve();
    /** The prompt header's KV (the same for every question), by token hash. */
    private readonly headers = new Map<string, KvBody>();
    /** Load-or-recompute per chunk on disk, from this session's measured disk, decode and prefill rates. */
    public readonly kvController = new KvController();
    /** A small context of its own for computing chunk and header KVs (see {@link aloneSequence}); made on first use. */
    private alone?: Promise<LlamaContextSequence | null>;
    /** The tail of the queue {@link evaluateAlone} runs its calls in. */
    private aloneQueue: Promise<void> = Promise.resolve();

    public constructor(parts: SessionParts) {
        this.model = parts.model;
        this.context = parts.context;
        this.sequence = parts.sequence;
        this.cache = parts.cache;
        this.threads = parts.threads;
        this.fingerprint = parts.fingerprint;
        this.rope = parts.rope;
        this.flashAttention = parts.flashAttention;
        this.nStream = parts.nStream;
        this.residentTier = parts.resident;
        this.failures = parts.failures;
    }

    public get resident(): ResidentTier | undefined {
        return this.residentTier;
    }

    /** Puts another resident tier in place (benchmarks and tests compare budgets); returns the previous one, not cleared. */
    public async replaceResidentTier(tier: ResidentTier | undefined): Promise<ResidentTier | undefined> {
        await this.residentAdmission;
        const previous = this.residentTier;
        this.residentTier = tier;
        return previous;
    }

    /** Resolves once the admissions into the resident tier queued so far are done. */
    public admissionsSettled(): Promise<void> {
        return this.residentAdmission;
    }

    /** Frees the resident tier (before its context is disposed); waits for an admission in flight first. */
    public async close(): Promise<void> {
        const tier = await this.replaceResidentTier(undefined);
        tier?.clear();
    }

    /**
     * The sequence chunk and header KVs are computed on: a small context of the same model with the chat context's
     * KV-relevant settings (flash attention, batch size, threads), so computing a chunk in the background never clears
     * the chat's sequence, whose prompt the next `prefix` question would reuse. Falls back to the chat's sequence when
     * the small context cannot be made (memory).
     */
    private async aloneSequence(length: number): Promise<LlamaContextSequence> {
        if (length + 1 > aloneContextSize)
            return this.sequence;

        this.alone ??= this.model.createContext({
            contextSize: aloneContextSize,
            batchSize: Math.min(this.context.batchSize, aloneContextSize),
            threads: this.threads,
            flashAttention: this.flashAttention,
            sequences: 1
        }).then((context) => context.getSequence(), () => null);
        const alone = await this.alone;
        if (alone == null || alone.disposed)
            return this.sequence;
        return alone;
    }

    /**
     * Evaluates tokens on a cleared sequence (see {@link aloneSequence}) without sampling and returns its KV state.
     * One at a time: clearing, evaluating and reading the state are three steps on one sequence, and background warming
     * computes chunks while a question computes its header, so two interleaved calls would read each other's tokens.
     */
    private evaluateAlone(tokens: Token[]): Promise<KvBody> {
        const run = this.aloneQueue.then(async () => {
            const sequence = await this.aloneSequence(tokens.length);
            await sequence.clearHistory();
            if (tokens.length > 0)
                await sequence.evaluateWithoutGeneratingNewTokens(tokens);

            return parseSeqStateMemory(await getContextSequenceState(sequence.context, sequenceIdOf(sequence))).body;
        });
        this.aloneQueue = run.then(() => undefined, () => undefined);
        return run;
    }

    /** The chunk cache's key for a chunk's tokens under this model and context settings. */
    private chunkKey(tokens: readonly Token[]) {
        return {fingerprint: this.fingerprint, chunkHash: tokensHash(tokens), promptFormatVersion};
    }

    /** Whether a chunk's KV is on the disk tier, without reading it (background warming skips those cheaply). */
    public async chunkCachedOnDisk(tokens: readonly Token[]): Promise<boolean> {
        return stat(this.cache.pathOf(this.chunkKey(tokens))).then((info) => info.isFile() && info.size > 0, () => false);
    }

    /**
     * Background warming's share of the resident tier: copies a chunk's KV (from the RAM or disk tier, computing it if
     * need be; `body` when the caller has it) into the tier while it has free room, never evicting (chunks that
     * questions used come first). So on a GPU the first question after start-up or an ingest already finds its chunks
     * in GPU memory. Returns whether it was copied.
     */
    public async warmResidentChunk(tokens: Token[], body?: KvBody): Promise<boolean> {
        const tier = this.residentTier;
        const key = `chunk:${tokensHash(tokens)}`;
        if (tier == null || tier.has(key) || tier.full)
            return false;
        try {
            return await tier.admit(this.sequence, key, body ?? (await this.chunkKv(tokens)).body, {evict: false});
        } catch (error) {
            this.failures.record("residentAdmission", error);
            return false;
        }
    }

    /** The header's KV, evaluated once per distinct header (it is the same for every question). */
    private async headerKv(tokens: Token[]): Promise<KvBody> {
        const key = tokensHash(tokens);
        let body = this.headers.get(key);
        if (body == null) {
            body = await this.evaluateAlone(tokens);
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
    private async cachedChunkKv(tokens: Token[]): Promise<CachedChunkKv> {
        const key = this.chunkKey(tokens);
        // Only on disk: the controller decides whether reading (and decoding) it beats recomputing it.
        const fileBytes = this.cache.diskOnlyBytes(key);
        const skipDisk = fileBytes != null && this.kvController.choose({tokens: tokens.length, fileBytes, coded: this.cache.codecOn}).source === "recompute";
        const found = skipDisk ? {hit: false as const} : await this.cache.get(key);
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
     * Tells the controller what disk loads cost. Loads that ran at once (a question's chunks) overlap, so each one's
     * read and decode times are scaled by `scale` (the batch's wall time over the sum of its loads' times, at most 1):
     * the controller then weighs a chunk's disk load by what it added to the question's wait.
     */
    private observeDiskLoads(loads: CachedChunkKv[], scale = 1): void {
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
     * cache it is counted, not thrown (the KV is still good for this question).
     */
    public async chunkKv(tokens: Token[], cached?: Promise<CachedChunkKv>): Promise<ChunkKvLoad> {
        let found: CachedChunkKv;
        if (cached != null) {
            found = await cached;  // its caller tells the controller
        } else {
            found = await this.cachedChunkKv(tokens);
            this.observeDiskLoads([found]);
        }
        if (found.hit)
            return {body: found.body, loadedBytes: found.loadedBytes, hit: true, source: found.source};

        const bos = this.model.tokens.bos;
        const prefix = bos != null ? [bos] : [];
        const prefillStartedAt = performance.now();
        const full = await this.evaluateAlone([...prefix, ...tokens]);
        this.kvController.observePrefill(prefix.length + tokens.length, performance.now() - prefillStartedAt);
        const order = full.cells.map((cell, index) => ({pos: cell.pos, index})).sort((a, b) => a.pos - b.pos);
        if (order.some((entry, index) => entry.index !== index))
            throw new Error("a fresh sequence's cells are not in position order; cannot slice the chunk out");

        const body = sliceCells(full, prefix.length, full.cells.length);
        try {
            const stored = await this.cache.put(this.chunkKey(tokens), {tokens: Int32Array.from(tokens), body, rope: this.rope});
            if (stored.error != null)
                this.failures.record("chunkCachePut", new Error(stored.error));
        } catch (error) {
            this.failures.record("chunkCachePut", error);
        }
        return {body, loadedBytes: 0, hit: false, source: {kvSource: "recompute", codecLevel: null, tokens: tokens.length, bytesRead: 0}};
    }

    /**
     * Builds the prompt's KV from cached chunk KVs and recomputes a selected set of tokens in one pass (CacheBlend).
     */
    public async prepare(prompt: BuiltPrompt, requested: BlendStrategy, ratio: number, options: BlendPrepareOptions = {}): Promise<PreparedPrompt> {
        // hkvd selects and recomputes inside one fused decode (patch 0003); where that cannot run, chunk-head's selection
        // (no pass) is the nearest strategy, and the stats say why.
        const fusedUnavailable = requested === "hkvd" ? fusedBlendUnavailable({flashAttention: this.flashAttention, architecture: this.rope.architecture}) : null;
        const strategy: BlendStrategy = fusedUnavailable != null ? "chunk-head" : requested;
        const segments = prompt.segments;
        const lastChunk = segments.findLastIndex((segment) => segment.kind === "chunk");
        const firstChunk = segments.findIndex((segment) => segment.kind === "chunk");
        const seqId = sequenceIdOf(this.sequence);

        // Layout: [header][chunk][label][chunk]...[tail]; the tail (question) is evaluated by the generator.
        let offset = 0;
        const layout = segments.map((segment) => {
            const start = offset;
            offset += segment.tokens.length;
            return {segment, start};
        });
        const tailStart = lastChunk >= 0 ? layout[lastChunk]!.start + segments[lastChunk]!.tokens.length : 0;
        const headerEnd = firstChunk >= 0 ? layout[firstChunk]!.start : 0;

        const loadStartedAt = performance.now();
        let kvBytesLoaded = 0;
        const chunkSources: ChunkKvStats[] = [];
        const tier = this.residentTier;
        const headerTokens = prompt.tokens.slice(0, headerEnd);
        const headerKey = `header:${tokensHash(headerTokens)}`;
        const residentHeader = tier?.get(headerKey);
        // Every chunk not in the resident tier is asked of the cache at once, before the header is computed: disk
        // reads and decodes (off the JS thread, on the addon's threads) overlap one another and the header's prefill,
        // instead of read, decode, splice one chunk after another.
        const cachedLoads = new Map<number, Promise<CachedChunkKv>>();
        for (const [index, {segment}] of layout.entries())
            if (segment.kind === "chunk" && tier?.has(`chunk:${tokensHash(segment.tokens)}`) !== true) {
                const load = this.cachedChunkKv(segment.tokens);
                load.catch(() => {});  // awaited below, in order; a later one's failure must not go unhandled meanwhile
                cachedLoads.set(index, load);
            }
        const loadsDone = Promise.all(cachedLoads.values()).then((loads) => {
            const batchMs = performance.now() - loadStartedAt;
            const summedMs = loads.reduce((sum, load) => sum + (load.hit && load.disk != null ? load.disk.readMs + (load.disk.decode?.ms ?? 0) : 0), 0);
            this.observeDiskLoads(loads, summedMs > 0 ? Math.min(1, batchMs / summedMs) : 1);
        });
        loadsDone.catch(() => {});
        const header = residentHeader == null ? await this.headerKv(headerTokens) : undefined;
        const parts: SplicePartInput[] = [residentHeader != null ? {resident: residentHeader, delta: 0} : {body: header!, delta: 0}];
        const toAdmit: Array<{key: string, body: KvBody}> = header != null && tier != null ? [{key: headerKey, body: header}] : [];
        for (const [index, {segment, start}] of layout.entries()) {
            if (segment.kind !== "chunk")
                continue;

            // Cached at positions 1..n; moved to start..start+n-1 with K rotated to match (RoPE shift): on the device
            // by llama.cpp's K-shift for a resident chunk, natively on the CPU otherwise.
            const key = `chunk:${tokensHash(segment.tokens)}`;
            const resident = tier?.get(key);
            if (resident != null) {
                parts.push({resident, delta: start - 1});
                chunkSources.push({kvSource: "resident", codecLevel: null, tokens: segment.tokens.length, bytesRead: 0});
                continue;
            }
            const {body, loadedBytes, source} = await this.chunkKv(segment.tokens, cachedLoads.get(index));
            kvBytesLoaded += loadedBytes;
            chunkSources.push(source);
            parts.push({body, delta: start - 1});
            if (tier != null)
                toAdmit.push({key, body});
        }

        await loadsDone;
        const prefixTokens = prompt.tokens.slice(0, tailStart);
        const chunkLoadMs = performance.now() - loadStartedAt;
        if (strategy === "hkvd" && parts.slice(1).every((part) => "resident" in part))
            parts.splice(1, parts.length - 1, ...withLabelCells(parts.slice(1), layout, headerEnd, tailStart));

        // Labels between chunks are new tokens: they are decoded at their positions together with the selection.
        const labelPositions: number[] = [];
        const chunkRanges: Array<{start: number, length: number}> = [];
        for (const {segment, start} of layout) {
            if (start >= tailStart || start < headerEnd)
                continue;

            if (segment.kind === "chunk")
                chunkRanges.push({start, length: segment.tokens.length});
            else
                for (let index = 0; index < segment.tokens.length; index++)
                    labelPositions.push(start + index);
        }
        const chunkTokenCount = chunkRanges.reduce((sum, range) => sum + range.length, 0);
        const budget = Math.min(chunkTokenCount, Math.round(ratio * chunkTokenCount));

        const selectStartedAt = performance.now();
        let selected: number[] = [];
        if (strategy === "chunk-head" && budget > 0) {
            for (const range of chunkRanges)
                for (let index = 0; index < Math.min(range.length, Math.ceil(ratio * range.length)); index++)
                    selected.push(range.start + index);
        }
        const selectMs = performance.now() - selectStartedAt;

        const spliceStartedAt = performance.now();
        let kvBlobBytes = 0;
        let kvResidentBytes = 0;
        let kvResidentMs = 0;
        if (parts.every((part) => "body" in part && part.body.cells.length === 0))
            await this.sequence.clearHistory();
        else {
            const {bytesRead: _bytesRead, ...splice} = await spliceIntoSequence(this.sequence, parts, prefixTokens, this.rope,
                {threads: this.threads, nStream: this.nStream, pinned: options.pinned ?? true});
            kvBlobBytes = splice.blobBytes;
            kvResidentBytes = splice.residentBytes;
            kvResidentMs = splice.residentMs;
            options.trace?.splice?.(splice);
        }
        const kvLoadMs = chunkLoadMs + performance.now() - spliceStartedAt;

        // The question, all but its last token, joins the same decode: one pass instead of two, and the generator then
        // evaluates only the last token (with logits) before sampling.
        const tail = prompt.tokens.slice(tailStart);
        const tailInBatch = tail.slice(0, -1);
        const tailPositions = tailInBatch.map((_, index) => tailStart + index);

        const recomputeStartedAt = performance.now();
        if (strategy === "hkvd") {
            // One pass: layers 0..check for every chunk, label and question token, the rest for the selected chunk
            // tokens and the new ones; each chunk's selection is its own top share by the check layer's K deviation.
            const fusedSegments: FusedSegment[] = layout
                .filter(({segment, start}) => start >= headerEnd && start < tailStart && segment.tokens.length > 0)
                .map(({segment, start}) => ({start, length: segment.tokens.length, forced: segment.kind !== "chunk"}));
            if (tailInBatch.length > 0)
                fusedSegments.push({start: tailStart, length: tailInBatch.length, forced: true});
            const run = await runFusedBlend(this.sequence, prompt.tokens, fusedSegments,
                {ratio, batchSize: this.context.batchSize, checkLayer: selectionLayer, mask: options.fusedMask});
            selected = run.selected;
            options.trace?.fused?.({decodes: run.decodes, decodeMs: run.decodeMs, decodeMsEach: run.decodeMsEach});
        } else {
            const positions = [...new Set([...labelPositions, ...selected, ...tailPositions])].sort((a, b) => a - b);
            await this.recomputeAt(seqId, positions, prompt.tokens, selected);
        }
        markTokensEvaluated(this.sequence, tailInBatch);
        const recomputeMs = performance.now() - recomputeStartedAt;
        if (tier != null && toAdmit.length > 0)
            this.admitResident(tier, toAdmit);

        const recomputedTokens = selected.length;
        return {
            strategy,
            ratio: strategy === "naive" ? 0 : ratio,
            ...(fusedUnavailable != null ? {fallbackReason: `hkvd unavailable: ${fusedUnavailable}; used chunk-head`} : {}),
            tokensToEvaluate: tail.slice(tailInBatch.length),
            reusedTokens: chunkTokenCount - recomputedTokens,
            recomputedTokens,
            freshTokens: headerEnd + labelPositions.length + tail.length,
            kvBytesLoaded,
            kvLoadMs,
            kvBlobBytes,
            kvResidentBytes,
            kvResidentMs,
            selectMs,
            recomputeMs,
            chunkKv: chunkSources,
            kvBytesRead: chunkSources.reduce((sum, chunk) => sum + chunk.bytesRead, 0),
            ...(strategy === "hkvd" ? {selectedPositions: selected} : {})
        };
    }

    /**
     * Copies the KVs a blend just loaded from host memory into the resident tier, after the blend (it waits for the
     * context lock, so it runs between the answer's decodes rather than before its first token). A failure (device
     * memory) only leaves them out, counted: the host tiers still serve them.
     */
    private admitResident(tier: ResidentTier, entries: Array<{key: string, body: KvBody}>): void {
        this.residentAdmission = this.residentAdmission.then(async () => {
            for (const {key, body} of entries) {
                if (this.context.disposed || this.residentTier !== tier)
                    return;
                await tier.admit(this.sequence, key, body);
            }
        }).catch((error: unknown) => this.failures.record("residentAdmission", error));
    }

    /** Removes the cells at `cachedPositions` and decodes the tokens at `positions` again, in as few decodes as the batch allows. */
    private async recomputeAt(seqId: number, positions: number[], tokens: readonly Token[], cachedPositions: readonly number[]): Promise<void> {
        if (positions.length === 0)
            return;

        const remove = consecutiveRuns([...cachedPositions].sort((a, b) => a - b)).map(({first, length}) => [first, first + length] as const);

        // Equal pieces rather than full ones and a remainder: llama.cpp's CPU flash-attention kernel takes a much slower
        // path for fewer than 64 query rows (measured: 8 tokens at 4k context 300 ms, 40 tokens 240 ms, 1 token 12 ms).
        const pieces = Math.ceil(positions.length / this.context.batchSize);
        const pieceSize = Math.ceil(positions.length / pieces);
        const batches: PositionedRun[][] = [];
        for (let start = 0; start < positions.length; start += pieceSize)
            batches.push(consecutiveRuns(positions.slice(start, start + pieceSize)).map(({first, length}) => ({
                firstPosition: first, tokens: Uint32Array.from(tokens.slice(first, first + length))
            })));
        await decodeAtPositions(this.context, seqId, remove, batches);
    }
}

/** Sorted positions as runs of consecutive ones. */
function consecutiveRuns(sorted: readonly number[]): Array<{first: number, length: number}> {
    const runs: Array<{first: number, length: number}> = [];
    for (let index = 0; index < sorted.length;) {
        let end = index + 1;
        while (end < sorted.length && sorted[end] === sorted[end - 1]! + 1)
            end++;
        runs.push({first: sorted[index]!, length: end - index});
        index = end;
    }
    return runs;
}
