// One blend session per loaded model: takes chunk KVs from the resident tier or from its ChunkKvSource (the chunk
// cache, or computing them), selects the tokens to recompute, splices the prompt's KV and recomputes (CacheBlend). `full` and `prefix` are in
// prepare.ts; hkvd selects and recomputes in one fused decode (fused.ts, Weft patch 0003), chunk-head in recompute.ts;
// the chunks the question is about are chosen in focus.ts, the prompt's positions in blend-layout.ts.
import {availableParallelism} from "node:os";
import type {Llama, LlamaContext, LlamaContextSequence, LlamaModel, Token} from "node-llama-cpp";
import type {ChunkKvStats} from "../../contract/index.js";
import type {BuiltPrompt} from "../prompt.js";
import type {ChunkKvCache} from "../kv/chunk-cache.js";
import type {CodedChunk} from "../kv/chunk-container.js";
import {modelFingerprint} from "../kv/fingerprint.js";
import type {KvBody} from "../kv/kv-blob.js";
import {ResidentTier} from "../kv/resident-tier.js";
import type {RopeParams} from "../kv/rope-params.js";
import {StoreFailures} from "../kv/store-failures.js";
import type {KvController} from "../kv/kv-controller.js";
import {available, type Capability, unavailable} from "../native/capability.js";
import {type BlendBuild, blendBuildOf} from "../native/llama-loader.js";
import {
    contextInternalsProblem, decodeBatchSize, markTokensEvaluated, residentKvSupported, sequenceIdOf
} from "../native/native-addon.js";
import {blendSupportOf} from "./blend-support.js";
import {chatKvLayout, defaultResidentBudgetBytes} from "./session-context.js";
import {blendLayout} from "./blend-layout.js";
import {type CachedChunkKv, type ChunkKvLoad, ChunkKvSource, type CodedChunkKv, leadHash, tokensHash} from "./chunk-kv-source.js";
import {defaultFocus, nameTokenTest, questionFocus} from "./focus.js";
import {fusedBlendUnavailable, runFusedBlend} from "./fused.js";
import {chunkHeadPositions, fusedSegmentsOf, otherChunkShare, recomputePlan} from "./recompute-plan.js";
import {recomputeAt} from "./recompute.js";
import {type BlendPrepareOptions, type PreparedPrompt, prepareFullInstead} from "./prepare.js";
import {type SplicePartInput, spliceIntoSequence, withLabelCells} from "./splice.js";

export type BlendStrategy = "naive" | "chunk-head" | "hkvd";

export {type ChunkKvLoad, promptFormatVersion} from "./chunk-kv-source.js";
export type {BlendPrepareOptions} from "./prepare.js";
export {defaultResidentBudgetBytes} from "./session-context.js";

/** The layer hkvd compares fresh and cached K at (CacheBlend's check layer); layers up to it run for every token. */
export const selectionLayer = 1;

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
    /** The chunks {@link cacheChunks} computes after answers, in order; settles, never rejects. */
    private caching: Promise<void> = Promise.resolve();
    /** Set by {@link close}: chunks still queued by {@link cacheChunks} are left. */
    private closed = false;
    /** Where chunk and header KVs come from: the chunk cache, or computed alone. */
    private readonly kvSource: ChunkKvSource;
    /** For the focus's hop (focus.ts). */
    private readonly isNameToken: (token: Token) => boolean;
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
        this.kvSource = new ChunkKvSource(parts);
        this.isNameToken = nameTokenTest(parts.model);
    }

    /** Load-or-recompute per chunk on disk, from this session's measured disk, decode and prefill rates. */
    public get kvController(): KvController {
        return this.kvSource.kvController;
    }

    /** A chunk's KV from the cache, or computed alone and cached (see {@link ChunkKvSource.chunkKv}). */
    public chunkKv(tokens: Token[], options: {diskLater?: boolean} = {}): Promise<ChunkKvLoad> {
        return this.kvSource.chunkKv(tokens, undefined, options);
    }

    /** A chunk's lead version (see {@link ChunkKvSource.leadKv}), from the cache or computed after `lead` and cached. */
    public leadKv(lead: Token[], tokens: Token[], options: {diskOnly?: boolean} = {}): Promise<ChunkKvLoad> {
        return this.kvSource.leadKv(lead, tokens, options);
    }

    /** Whether the RAM or disk tier holds a chunk's lead version, without reading it. */
    public leadCached(lead: readonly Token[], tokens: readonly Token[]): boolean {
        return this.kvSource.leadCached(lead, tokens);
    }

    /** Whether a chunk's KV is on the disk tier, without reading it (background warming skips those cheaply). */
    public chunkCachedOnDisk(tokens: readonly Token[]): Promise<boolean> {
        return this.kvSource.chunkCachedOnDisk(tokens);
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

    /** Resolves once the disk files of chunks that questions computed, written after them, are written (or failed, counted). */
    public storesSettled(): Promise<void> {
        return this.kvSource.storesSettled();
    }

    /**
     * Frees the resident tier (before its context is disposed) and its own small context; waits for an admission, the
     * chunk computations and the disk files in flight first.
     */
    public async close(): Promise<void> {
        this.closed = true;
        const tier = await this.replaceResidentTier(undefined);
        tier?.clear();
        await this.caching;
        await this.kvSource.close();
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

    /**
     * Computes and caches the chunks a full-prefill fallback left (PreparedPrompt.uncachedChunks), one at a time, once
     * the answer is done; stops after the chunk in progress when `stop` says so (a question waits) or on {@link close}.
     * Failures are counted, not thrown. Run under the model lock, which unloading waits for (a one-shot `weft ask`).
     */
    public cacheChunks(chunks: readonly Token[][], options: {stop?: () => boolean} = {}): Promise<void> {
        this.caching = this.caching.then(async () => {
            for (const tokens of chunks) {
                if (this.closed || options.stop?.() === true)
                    return;
                try {
                    await this.kvSource.chunkKv(tokens, undefined, {diskLater: true});
                } catch (error) {
                    this.failures.record("chunkCachePut", error);
                }
            }
        });
        return this.caching;
    }

    /**
     * Builds the prompt's KV from cached chunk KVs and recomputes a selected set of tokens in one pass (CacheBlend).
     */
    public async prepare(prompt: BuiltPrompt, requested: BlendStrategy, ratio: number, options: BlendPrepareOptions = {}): Promise<PreparedPrompt> {
        // hkvd selects and recomputes inside one fused decode (patch 0003); where that cannot run, chunk-head's selection
        // (no pass) is the nearest strategy, and the stats say why.
        const fusedUnavailable = requested === "hkvd" ? fusedBlendUnavailable({flashAttention: this.flashAttention, architecture: this.rope.architecture}) : null;
        const strategy: BlendStrategy = fusedUnavailable != null ? "chunk-head" : requested;
        const seqId = sequenceIdOf(this.sequence);
        // The tail (question) is evaluated by the generator.
        const layout = blendLayout(prompt);
        const {headerEnd, tailStart, labelPositions, chunkTokenCount} = layout;

        const loadStartedAt = performance.now();
        let kvBytesLoaded = 0;
        const chunkSources: ChunkKvStats[] = [];
        const tier = this.residentTier;
        const headerTokens = prompt.tokens.slice(0, headerEnd);
        const headerKey = `header:${tokensHash(headerTokens)}`;
        const residentHeader = tier?.get(headerKey);
        // Every chunk not in the resident tier is asked of the cache at once, before the header is computed: disk
        // reads and decodes (off the JS thread, on the addon's threads) overlap one another and the header's prefill,
        // instead of read, decode, splice one chunk after another. The controller plans them together, and the chunks
        // it recomputes (or the cache misses) start now too: on a GPU they are computed while the CPU decodes the rest.
        // The first source comes as its lead version (ChunkKvSource.leadKv: exactly a full prefill's KV) when that is
        // cached, or when the question is about it (focus.ts), whose whole recompute computing it replaces.
        const focusIndices = strategy === "naive" ? [] : questionFocus(layout.chunks.map(({segment}) => segment),
            prompt.tokens.slice(tailStart), options.focus ?? defaultFocus, this.isNameToken);
        const first = layout.chunks[0];
        const leadKey = first != null ? `lead:${leadHash(headerTokens, first.segment.tokens)}` : "";
        const leadFirst = strategy !== "naive" && first != null && (focusIndices.includes(0) || tier?.has(leadKey) === true ||
            this.kvSource.leadCached(headerTokens, first.segment.tokens)) ? first : null;
        const fromSource = layout.placed.flatMap(({segment}, index) =>
            segment.kind === "chunk" && segment !== leadFirst?.segment && tier?.has(`chunk:${tokensHash(segment.tokens)}`) !== true
                ? [{index, tokens: segment.tokens}] : []);
        const uncached = options.uncachedFallback === true ? fromSource.filter(({tokens}) => !this.kvSource.cachedAnywhere(tokens)) : [];
        const uncachedTokens = uncached.reduce((sum, {tokens}) => sum + tokens.length, 0);
        const computeMs = uncachedTokens > 0 ? this.kvController.computeAloneMs(uncachedTokens) : null;
        if (computeMs != null && options.fullPrefillMs != null && computeMs > (1 - ratio) * options.fullPrefillMs) {
            return {
                ...await prepareFullInstead(this.sequence, prompt.tokens, layout.chunks, `${requested}: ${uncached.length} of ${layout.chunks.length} retrieved chunks ` +
                    `have no cached KV yet (${Math.round(100 * uncachedTokens / chunkTokenCount)} % of their tokens); computing them before the ` +
                    `blend (about ${Math.round(computeMs)} ms) would take longer than a full prefill (about ${Math.round(options.fullPrefillMs)} ms)`),
                uncachedChunks: uncached.map(({tokens}) => tokens)
            };
        }
        const plan = this.kvSource.planChunks(fromSource.map((chunk) => chunk.tokens));
        // Chunks on disk can take longer to load than the whole prompt takes to prefill on this context (an H200 reads
        // and decodes 8k tokens' KV in ~400 ms and prefills them in ~380): then the answer is a full prefill, and says so.
        if (plan.wait != null && options.fullPrefillMs != null && plan.wait.scaledMs > options.fullPrefillMs) {
            return prepareFullInstead(this.sequence, prompt.tokens, layout.chunks, `${requested}: loading its chunks from disk (about ${Math.round(plan.wait.scaledMs)} ms) ` +
                `is slower than a full prefill (about ${Math.round(options.fullPrefillMs)} ms)`);
        }
        // resident too, so that hkvd's label cells stay in order (withLabelCells: all parts resident, or none)
        const residentLead = leadFirst != null ? tier?.get(leadKey) : undefined;
        const leadLoad = leadFirst != null && residentLead == null ? this.kvSource.leadKv(headerTokens, leadFirst.segment.tokens, {diskLater: true}) : null;
        leadLoad?.catch(() => {});
        const cachedLoads = new Map<number, Promise<CachedChunkKv>>();
        const chunkLoads = new Map<number, Promise<ChunkKvLoad | CodedChunkKv>>();
        // Disk chunks decode straight into their cells (V in rows; hkvd's label cells and the resident tier take rows).
        const coded = strategy !== "hkvd" && tier == null && this.flashAttention;
        for (const [j, {cached, load}] of this.kvSource.startLoads(fromSource.map((chunk) => chunk.tokens), plan, {coded}).entries()) {
            cachedLoads.set(fromSource[j]!.index, cached);
            chunkLoads.set(fromSource[j]!.index, load);
        }
        const loadsDone = this.kvSource.observeBatch([...cachedLoads.values()], loadStartedAt);
        const header = residentHeader == null ? await this.kvSource.headerKv(headerTokens) : undefined;
        const parts: SplicePartInput[] = [residentHeader != null ? {resident: residentHeader, delta: 0} : {body: header!, delta: 0}];
        const toAdmit: Array<{key: string, body: KvBody}> = header != null && tier != null ? [{key: headerKey, body: header}] : [];
        const codedLoads = new Map<CodedChunk, {tokens: Token[], source: ChunkKvStats}>();
        for (const [index, {segment, start}] of layout.placed.entries()) {
            if (segment.kind !== "chunk")
                continue;
            if (segment === leadFirst?.segment) {
                // cached right where the prompt puts it (after its lead): no move, no repair
                if (residentLead != null) {
                    parts.push({resident: residentLead, delta: 0});
                    chunkSources.push({kvSource: "resident", codecLevel: null, tokens: segment.tokens.length, bytesRead: 0});
                    continue;
                }
                const {body, loadedBytes, source} = await leadLoad!;
                kvBytesLoaded += loadedBytes;
                chunkSources.push(source);
                parts.push({body, delta: 0});
                if (tier != null)
                    toAdmit.push({key: leadKey, body});
                continue;
            }

            // Cached at positions 1..n; moved to start..start+n-1 with K rotated to match (RoPE shift): on the device
            // by llama.cpp's K-shift for a resident chunk, natively on the CPU otherwise.
            const key = `chunk:${tokensHash(segment.tokens)}`;
            const resident = tier?.get(key);
            if (resident != null) {
                parts.push({resident, delta: start - 1});
                chunkSources.push({kvSource: "resident", codecLevel: null, tokens: segment.tokens.length, bytesRead: 0});
                continue;
            }
            const loaded = await (chunkLoads.get(index) ?? this.kvSource.chunkKv(segment.tokens));
            chunkSources.push(loaded.source);
            kvBytesLoaded += "coded" in loaded ? loaded.coded.f16Bytes : loaded.loadedBytes;
            if ("coded" in loaded) {
                parts.push({coded: loaded.coded, delta: start - loaded.coded.firstPos});
                codedLoads.set(loaded.coded, {tokens: segment.tokens, source: loaded.source});
                continue;
            }
            parts.push({body: loaded.body, delta: start - 1});
            if (tier != null)
                toAdmit.push({key, body: loaded.body});
        }

        await loadsDone;
        const prefixTokens = prompt.tokens.slice(0, tailStart);
        const chunkLoadMs = performance.now() - loadStartedAt;
        if (plan.wait != null)
            this.kvController.observeColdWait(plan.wait.plannedMs, chunkLoadMs);
        // Labels are new tokens, decoded with the selection into cells given here in prompt order: every recomputed row
        // then lands in position order (hkvd overwrites; the others free them and llama.cpp refills the holes in order).
        const chunkParts = parts.splice(1);
        const labelCells = parts.push(...withLabelCells(chunkParts, layout.placed, headerEnd, tailStart)) - 1 > chunkParts.length;
        const focus = focusIndices.map((index) => layout.chunks[index]!);
        const toRecompute = recomputePlan(layout, focus, leadFirst);
        const share = otherChunkShare(layout, toRecompute, ratio);
        const selectStartedAt = performance.now();
        let selected: number[] = strategy === "chunk-head" ? chunkHeadPositions(layout, toRecompute, share) : [];
        const selectMs = performance.now() - selectStartedAt;

        const spliceStartedAt = performance.now();
        let kvBlobBytes = 0;
        let kvResidentBytes = 0;
        let kvResidentMs = 0;
        if (parts.every((part) => "body" in part && part.body.cells.length === 0))
            await this.sequence.clearHistory();
        else {
            const {bytesRead: _bytesRead, ...splice} = await spliceIntoSequence(this.sequence, parts, prefixTokens, this.rope, {
                // coded parts decode on every core, as the cache's own decodes of disk chunks do (the addon's pool)
                threads: codedLoads.size > 0 ? Math.max(this.threads, availableParallelism()) : this.threads,
                nStream: this.nStream, pinned: options.pinned ?? true, codedFingerprint: this.fingerprint,
                decodeInstead: (chunk) => this.kvSource.rowsInstead(chunk, codedLoads.get(chunk)!.source)
            });
            if (splice.codedBytes > 0)
                this.kvController.observeDecode(splice.codedBytes, [...codedLoads.values()].reduce((sum, {tokens}) => sum + tokens.length, 0),
                    Math.min(splice.codedMs, splice.buildMs));  // the decoding's wall time, at most: codedMs sums the threads
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
            const run = await runFusedBlend(this.sequence, prompt.tokens, fusedSegmentsOf(layout, toRecompute, tailInBatch.length),
                // the decodes' host phases only when a trace sink asks (the GPU benchmark): the product passes none
                {ratio: share, batchSize: decodeBatchSize(this.context), checkLayer: options.checkLayer ?? selectionLayer, mask: options.fusedMask, phases: options.trace?.fusedPhases === true});
            selected = [...run.selected, ...toRecompute.focusPositions].sort((a, b) => a - b);
            options.trace?.fused?.({decodes: run.decodes, decodeMs: run.decodeMs, decodeMsEach: run.decodeMsEach,
                ...(run.phaseMsEach != null ? {phaseMsEach: run.phaseMsEach} : {})});
        } else {
            const positions = [...new Set([...labelPositions, ...selected, ...tailPositions])].sort((a, b) => a - b);
            await recomputeAt(this.context, seqId, positions, prompt.tokens, labelCells ? [...selected, ...labelPositions] : selected);
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
            ...(strategy === "hkvd" ? {selectedPositions: selected} : {}),
            ...(strategy !== "naive" ? {focusSources: focus.flatMap(({segment}) => segment.source != null ? [segment.source.n] : [])} : {}),
            exactSources: leadFirst?.segment.source != null ? [leadFirst.segment.source.n] : [],
            // the disk chunks decoded into the cells only: into the RAM tier after the answer (cacheChunks), for the next question
            ...(codedLoads.size > 0 && this.cache.keepsInRam ? {uncachedChunks: [...codedLoads.values()].map(({tokens}) => tokens)} : {})
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
}
