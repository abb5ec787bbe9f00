import {createHash} from "node:crypto";
import {stat} from "node:fs/promises";
import type {Llama, LlamaContext, LlamaContextSequence, LlamaModel, Token} from "node-llama-cpp";
import type {BuiltPrompt} from "../prompt.js";
import {type ChunkKvCache, modelFingerprint} from "../kv/chunk-cache.js";
import {isTransposed, type KvBody, parseSeqStateMemory, sliceCells} from "../kv/kv-blob.js";
import {
    captureLayerKV, decodeAtPositions, getContextSequenceState, kvDeviation, type LayerKV, loadNativeAddon, markTokensEvaluated, type PositionedRun,
    residentKvSupported, sequenceIdOf
} from "../native/native-addon.js";
import {detectPatchedBuild} from "../native/patched-build.js";
import type {PreparedPrompt} from "./prepare.js";
import {ResidentTier} from "../kv/resident-tier.js";
import {type RopeParams, ropeParamsFromGguf} from "../kv/rope-params.js";
import {type SplicePartInput, spliceIntoSequence, spliceRopeOf} from "./splice.js";

export type BlendStrategy = "naive" | "chunk-head" | "hkvd";

/** Bump when the way a chunk's KV is computed changes (BOS handling, tokenization), so old caches miss. */
export const promptFormatVersion = 1;

export type BlendContext = {
    model: LlamaModel;
    context: LlamaContext;
    sequence: LlamaContextSequence;
    cache: ChunkKvCache;
    fingerprint: string;
    rope: RopeParams;
    threads: number;
    flashAttention: boolean;
    /** Streams of the chat context's KV cache (a state loaded into it must declare as many). */
    nStream: number;
    /** The prompt header's KV (the same for every question), by token hash; a few entries. */
    headers: Map<string, KvBody>;
    /** Build the spliced state in pinned host memory when a GPU backend is loaded (default; benchmarks turn it off to compare). */
    pinned?: boolean;
    /** A small context of its own for computing chunk and header KVs (see {@link aloneSequence}); made on first use. */
    alone?: Promise<LlamaContextSequence | null>;
    /**
     * The hot tier: chunk and header KVs kept in the KV cache's own memory (GPU memory on a GPU build), placed with
     * device-to-device copies by `naive` and `chunk-head`. Absent where the build lacks patch 0002, with flash
     * attention off (transposed V), or with a zero budget (the default on CPU, where it would only copy RAM to RAM).
     */
    resident?: ResidentTier;
    /** The latest admission into the resident tier (it runs after a blend, off the answer's path); settles, never rejects. */
    residentAdmission?: Promise<void>;
};

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

/**
 * Everything the blend path needs for one loaded model, or the reason it cannot run here: the patched
 * llama.cpp build must be the one loaded, the native addon must load, and the model's RoPE must be one
 * Weft can re-position.
 */
export async function openBlendContext(options: {
    llama: Llama, model: LlamaModel, context: LlamaContext, sequence: LlamaContextSequence, modelPath: string,
    cache: ChunkKvCache, threads: number,
    /** Byte budget of the resident (GPU) tier; default {@link defaultResidentBudgetBytes}. 0 turns it off. */
    residentBudgetBytes?: number
}): Promise<BlendContext | string> {
    const build = detectPatchedBuild({gpu: options.llama.gpu});
    if (!build.patched)
        return build.reason;

    if (options.llama.buildType !== "localBuild")
        return "the loaded llama.cpp is node-llama-cpp's prebuilt binary, not Weft's patched build";

    const addon = loadNativeAddon();
    if (addon.addon == null)
        return addon.error;

    let rope: RopeParams;
    try {
        rope = ropeParamsFromGguf(options.model.fileInfo);
    } catch (error) {
        return `this model's RoPE cannot be re-positioned: ${(error as Error).message}`;
    }

    const {flashAttention, nStream} = await chatKvLayout(options.sequence, options.model);
    const residentBudgetBytes = options.residentBudgetBytes ?? await defaultResidentBudgetBytes(options.llama);
    return {
        ...(residentBudgetBytes > 0 && flashAttention && residentKvSupported() ? {resident: new ResidentTier(residentBudgetBytes)} : {}),
        model: options.model,
        context: options.context,
        sequence: options.sequence,
        cache: options.cache,
        fingerprint: await modelFingerprint({modelPath: options.modelPath, flashAttention}),
        rope,
        threads: options.threads,
        flashAttention,
        nStream,
        headers: new Map()
    };
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

/** The early layer hkvd compares at (CacheBlend selects on the first layers' K/V deviation). */
const selectionLayer = 1;

function chunkKeyHash(tokens: readonly Token[]): string {
    return createHash("sha256").update(Uint32Array.from(tokens)).digest("hex").slice(0, 40);
}

/**
 * The sequence chunk and header KVs are computed on: a small context of the same model with the chat context's
 * KV-relevant settings (flash attention, batch size, threads), so computing a chunk in the background never clears
 * the chat's sequence, whose prompt the next `prefix` question would reuse. Falls back to the chat's sequence when
 * the small context cannot be made (memory).
 */
async function aloneSequence(blend: BlendContext, length: number): Promise<LlamaContextSequence> {
    if (length + 1 > aloneContextSize)
        return blend.sequence;

    blend.alone ??= blend.model.createContext({
        contextSize: aloneContextSize,
        batchSize: Math.min(blend.context.batchSize, aloneContextSize),
        threads: blend.threads,
        flashAttention: blend.flashAttention,
        sequences: 1
    }).then((context) => context.getSequence(), () => null);
    const alone = await blend.alone;
    if (alone == null || alone.disposed)
        return blend.sequence;
    return alone;
}

/** Evaluates tokens on a cleared sequence (see {@link aloneSequence}) without sampling and returns its KV state. */
async function evaluateAlone(blend: BlendContext, tokens: Token[]): Promise<KvBody> {
    const sequence = await aloneSequence(blend, tokens.length);
    await sequence.clearHistory();
    if (tokens.length > 0)
        await sequence.evaluateWithoutGeneratingNewTokens(tokens);

    const state = parseSeqStateMemory(await getContextSequenceState(sequence.context, sequenceIdOf(sequence)));
    return state.body;
}

/** The chunk cache's key for a chunk's tokens under this model and context settings. */
function chunkKey(blend: BlendContext, tokens: readonly Token[]) {
    return {fingerprint: blend.fingerprint, chunkHash: chunkKeyHash(tokens), promptFormatVersion};
}

/** Whether a chunk's KV is on the disk tier, without reading it (background warming skips those cheaply). */
export async function chunkCachedOnDisk(blend: BlendContext, tokens: readonly Token[]): Promise<boolean> {
    return stat(blend.cache.pathOf(chunkKey(blend, tokens))).then((info) => info.isFile() && info.size > 0, () => false);
}

/**
 * Background warming's share of the resident tier: copies a chunk's KV (from the RAM or disk tier, computing it if
 * need be; `body` when the caller has it) into the tier while it has free room, never evicting (chunks that questions used come first). So on a GPU
 * the first question after start-up or an ingest already finds its chunks in GPU memory. Returns whether it was copied.
 */
export async function warmResidentChunk(blend: BlendContext, tokens: Token[], body?: KvBody): Promise<boolean> {
    const tier = blend.resident;
    const key = `chunk:${chunkKeyHash(tokens)}`;
    if (tier == null || tier.has(key) || tier.full)
        return false;
    return tier.admit(blend.sequence, key, body ?? (await chunkKv(blend, tokens)).body, {evict: false});
}

/** The header's KV, evaluated once per distinct header (it is the same for every question). */
async function headerKv(blend: BlendContext, tokens: Token[]): Promise<KvBody> {
    const key = chunkKeyHash(tokens);
    let body = blend.headers.get(key);
    if (body == null) {
        body = await evaluateAlone(blend, tokens);
        if (blend.headers.size >= 4)
            blend.headers.delete(blend.headers.keys().next().value!);
        blend.headers.set(key, body);
    }
    return body;
}

/**
 * A chunk's KV as computed alone: after a BOS token (so the chunk's first token is not the attention sink),
 * whose cell is then dropped; the chunk's cells sit at positions 1..n. Cached per model fingerprint.
 */
export async function chunkKv(blend: BlendContext, tokens: Token[]): Promise<{body: KvBody, loadedBytes: number, hit: boolean}> {
    const key = chunkKey(blend, tokens);
    const found = await blend.cache.get(key);
    if (found.hit)
        return {body: found.body, loadedBytes: found.bytes, hit: true};

    const bos = blend.model.tokens.bos;
    const prefix = bos != null ? [bos] : [];
    const full = await evaluateAlone(blend, [...prefix, ...tokens]);
    const order = full.cells.map((cell, index) => ({pos: cell.pos, index})).sort((a, b) => a.pos - b.pos);
    if (order.some((entry, index) => entry.index !== index))
        throw new Error("a fresh sequence's cells are not in position order; cannot slice the chunk out");

    const body = sliceCells(full, prefix.length, full.cells.length);
    await blend.cache.put(key, {tokens: Int32Array.from(tokens), body});
    return {body, loadedBytes: 0, hit: false};
}

/**
 * Builds the prompt's KV from cached chunk KVs and recomputes a selected set of tokens in one pass
 * (CacheBlend). Needs the scattered-positions patch and the native addon; the caller checks both.
 */
export async function prepareBlend(blend: BlendContext, prompt: BuiltPrompt, strategy: BlendStrategy, ratio: number): Promise<PreparedPrompt> {
    const segments = prompt.segments;
    const lastChunk = segments.findLastIndex((segment) => segment.kind === "chunk");
    const firstChunk = segments.findIndex((segment) => segment.kind === "chunk");
    const seqId = sequenceIdOf(blend.sequence);

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
    // hkvd scores host rows and overrides its check layer's rows on the host: it does not use the resident tier.
    const tier = strategy === "hkvd" ? undefined : blend.resident;
    const headerTokens = prompt.tokens.slice(0, headerEnd);
    const headerKey = `header:${chunkKeyHash(headerTokens)}`;
    const residentHeader = tier?.get(headerKey);
    const header = residentHeader == null ? await headerKv(blend, headerTokens) : undefined;
    const parts: SplicePartInput[] = [residentHeader != null ? {resident: residentHeader, delta: 0} : {body: header!, delta: 0}];
    const toAdmit: Array<{key: string, body: KvBody}> = header != null && tier != null ? [{key: headerKey, body: header}] : [];
    const chunks: ChunkPlacement[] = [];
    for (const {segment, start} of layout) {
        if (segment.kind !== "chunk")
            continue;

        // Cached at positions 1..n; moved to start..start+n-1 with K rotated to match (RoPE shift): on the device
        // by llama.cpp's K-shift for a resident chunk, natively on the CPU otherwise.
        const key = `chunk:${chunkKeyHash(segment.tokens)}`;
        const resident = tier?.get(key);
        if (resident != null) {
            parts.push({resident, delta: start - 1});
            continue;
        }
        const {body, loadedBytes} = await chunkKv(blend, segment.tokens);
        kvBytesLoaded += loadedBytes;
        parts.push({body, delta: start - 1});
        chunks.push({start, body});
        if (tier != null)
            toAdmit.push({key, body});
    }

    const prefixTokens = prompt.tokens.slice(0, tailStart);
    const chunkLoadMs = performance.now() - loadStartedAt;

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
    let exactLayers: Array<{layer: number, k: Float32Array, v: Float32Array}> = [];
    let selectDetail: PreparedPrompt["selectDetail"];
    if (strategy === "chunk-head" && budget > 0) {
        for (const range of chunkRanges)
            for (let index = 0; index < Math.min(range.length, Math.ceil(ratio * range.length)); index++)
                selected.push(range.start + index);
    } else if (strategy === "hkvd" && budget > 0) {
        const selection = await selectByKvDeviation(blend, prefixTokens, chunks, budget);
        selected = selection.positions;
        selectDetail = selection.detail;
        // The capture pass computed this layer exactly for every prompt token: the spliced cache takes those rows
        // (CacheBlend keeps its check layer's recomputed KV too).
        exactLayers = [{layer: selectionLayer, k: selection.captured.k, v: selection.captured.v}];
    }
    const selectMs = performance.now() - selectStartedAt;

    const spliceStartedAt = performance.now();
    let splice: PreparedPrompt["splice"];
    if (parts.every((part) => "body" in part && part.body.cells.length === 0))
        await blend.sequence.clearHistory();
    else {
        const {blobBytes, buildMs, setMs, pinned, residentBytes, residentMs, residentPlaceMs, residentQueueMs, residentSyncMs} =
            await spliceIntoSequence(blend.sequence, parts, prefixTokens, blend.rope,
                {threads: blend.threads, nStream: blend.nStream, pinned: blend.pinned ?? true, overrides: exactLayers});
        splice = {blobBytes, buildMs, setMs, pinned, residentBytes, residentMs, residentPlaceMs, residentQueueMs, residentSyncMs};
    }
    const kvLoadMs = chunkLoadMs + performance.now() - spliceStartedAt;

    // The question, all but its last token, joins the same decode: one pass instead of two, and the generator then
    // evaluates only the last token (with logits) before sampling.
    const tail = prompt.tokens.slice(tailStart);
    const tailInBatch = tail.slice(0, -1);
    const tailPositions = tailInBatch.map((_, index) => tailStart + index);

    const recomputeStartedAt = performance.now();
    const positions = [...new Set([...labelPositions, ...selected, ...tailPositions])].sort((a, b) => a - b);
    await recomputeAt(blend, seqId, positions, prompt.tokens, selected);
    markTokensEvaluated(blend.sequence, tailInBatch);
    const recomputeMs = performance.now() - recomputeStartedAt;
    if (tier != null && toAdmit.length > 0)
        admitResident(blend, tier, toAdmit);

    const recomputedTokens = selected.length;
    return {
        strategy,
        ratio: strategy === "naive" ? 0 : ratio,
        tokensToEvaluate: tail.slice(tailInBatch.length),
        reusedTokens: chunkTokenCount - recomputedTokens,
        recomputedTokens,
        freshTokens: headerEnd + labelPositions.length + tail.length,
        kvBytesLoaded,
        kvLoadMs,
        selectMs,
        recomputeMs,
        ...(splice != null ? {splice} : {}),
        ...(selectDetail != null ? {selectDetail} : {})
    };
}

type ChunkPlacement = {start: number, body: KvBody};

/**
 * Copies the KVs a blend just loaded from host memory into the resident tier, after the blend (it waits for the
 * context lock, so it runs between the answer's decodes rather than before its first token). A failure (device memory)
 * only leaves them out: the host tiers still serve them.
 */
function admitResident(blend: BlendContext, tier: ResidentTier, entries: Array<{key: string, body: KvBody}>): void {
    const previous = blend.residentAdmission ?? Promise.resolve();
    blend.residentAdmission = previous.then(async () => {
        for (const {key, body} of entries) {
            if (blend.context.disposed || blend.resident !== tier)
                return;
            await tier.admit(blend.sequence, key, body);
        }
    }).catch(() => undefined);
}

/** Frees the resident tier (before its context is disposed); waits for an admission in flight first. */
export async function closeResidentTier(blend: BlendContext): Promise<void> {
    const tier = blend.resident;
    delete blend.resident;
    await blend.residentAdmission;
    tier?.clear();
}

/**
 * The capture context's size for a prompt: rounded up to a multiple of 512 cells, so questions of nearby lengths share
 * one of the addon's cached capture contexts instead of each creating its own (the results do not depend on the
 * context's size, only on the cells in use).
 */
export function captureContextSize(tokens: number): number {
    return Math.max(512, Math.ceil(tokens / 512) * 512);
}

/**
 * CacheBlend's selection: one early layer's K/V for the whole blended prefix under full attention
 * (a private context stopped after that layer), against the chunk-alone K/V now in the cache (K re-positioned
 * like the spliced cache's); the tokens that deviate most are the ones whose cross-chunk attention matters.
 */
async function selectByKvDeviation(blend: BlendContext, tokens: Token[], chunks: readonly ChunkPlacement[], budget: number): Promise<{
    positions: number[], captured: LayerKV, detail: NonNullable<PreparedPrompt["selectDetail"]>
}> {
    const captureStartedAt = performance.now();
    const captured = await captureLayerKV(blend.model, tokens, selectionLayer, {
        contextSize: captureContextSize(tokens.length),
        threads: blend.threads,
        flashAttention: blend.flashAttention
    });
    const captureMs = performance.now() - captureStartedAt;
    const detailOf = (scoreMs: number) => ({captureMs, captureDecodeMs: captured.decodeMs, captureCopyMs: captured.copyMs,
        captureDecodes: captured.decodes, scoreMs});
    const placed = chunks.filter(({body}) => body.layers[selectionLayer] != null && body.cells.length > 0);
    if (placed.length === 0)
        return {positions: [], captured, detail: detailOf(0)};
    const scoreStartedAt = performance.now();

    const first = placed[0]!.body.layers[selectionLayer]!;
    const scores = await kvDeviation({
        capturedK: captured.k,
        capturedV: captured.v,
        nEmbdK: captured.nEmbdK,
        nEmbdV: captured.nEmbdV,
        kType: first.k.type,
        vType: first.v.type,
        vTrans: isTransposed(first.v),
        rope: spliceRopeOf(blend.rope),
        threads: blend.threads,
        // Cells are in position order (chunkKv checks), so cell c sits at start + c once moved by start - 1.
        chunks: placed.map(({start, body}) => {
            const layer = body.layers[selectionLayer]!;
            return {
                start, cellCount: body.cells.length, delta: start - 1, k: layer.k.rows,
                v: isTransposed(layer.v) ? layer.v.data : layer.v.rows
            };
        })
    });

    const positions = new Int32Array(scores.length);
    let at = 0;
    for (const {start, body} of placed)
        for (let cell = 0; cell < body.cells.length; cell++)
            positions[at++] = start + cell;
    const order = Array.from(scores.keys()).sort((a, b) => scores[b]! - scores[a]!);
    return {positions: order.slice(0, budget).map((index) => positions[index]!), captured, detail: detailOf(performance.now() - scoreStartedAt)};
}

/** Removes the cells at `positions` (where they exist) and decodes those tokens again, in as few decodes as the batch allows. */
async function recomputeAt(blend: BlendContext, seqId: number, positions: number[], tokens: readonly Token[], cachedPositions: readonly number[]): Promise<void> {
    if (positions.length === 0)
        return;

    const remove: Array<[number, number]> = consecutiveRuns([...cachedPositions].sort((a, b) => a - b))
        .map(({first, length}) => [first, first + length]);

    // Equal pieces rather than full ones and a remainder: llama.cpp's CPU flash-attention kernel takes a much slower
    // path for fewer than 64 query rows (measured: 8 tokens at 4k context 300 ms, 40 tokens 240 ms, 1 token 12 ms).
    const pieces = Math.ceil(positions.length / blend.context.batchSize);
    const pieceSize = Math.ceil(positions.length / pieces);
    const batches: PositionedRun[][] = [];
    for (let start = 0; start < positions.length; start += pieceSize)
        batches.push(consecutiveRuns(positions.slice(start, start + pieceSize)).map(({first, length}) => ({
            firstPosition: first, tokens: Uint32Array.from(tokens.slice(first, first + length))
        })));
    await decodeAtPositions(blend.context, seqId, remove, batches);
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
