/**
 * The one place that loads Weft's N-API addon (native/, built by scripts/build-native.mjs into
 * native/build/Release/weft_native.node) and types it. The addon reaches what node-llama-cpp 3.22.1 keeps private:
 * its native context (`LlamaContext._ctx`) and model (`LlamaModel._model`), and resolves every llama.cpp function at
 * run time from the library node-llama-cpp loaded (CPU, CUDA, Vulkan or Metal alike).
 *
 * - sequence KV state as an in-memory blob (llama_state_seq_get_data / set_data; format in kv-blob.ts);
 * - layer-N K/V capture on a private context of the same model (cb_eval): the exact rows the graph writes into the
 *   layer's KV cache (K after RoPE, `Kcur-<layer>` in llama-style graphs; V `Vcur-<layer>`), as f32, token-major.
 *
 * {@link loadNativeAddon} never throws: the engine falls back to exact prefix reuse when the addon is absent. The wrappers
 * below throw {@link NativeAddonUnavailableError} then. None of them takes node-llama-cpp's evaluation locks: call
 * them only while nothing evaluates on that context (the engine's mutex).
 */
import {existsSync} from "node:fs";
import {createRequire} from "node:module";
import path from "node:path";
import {fileURLToPath, pathToFileURL} from "node:url";
import type {LlamaContext, LlamaContextSequence, LlamaModel, Token} from "node-llama-cpp";
import {available, type Capability, unavailable} from "./capability.js";
import type {
    CaptureLayerOptions, ContextHandle, DecodeMaskMode, DeviationSpec, FusedBlendResult, FusedBlendSpec, KvCodecDecodeResult, KvCodecPeekResult,
    KvCodecEncodeResult, KvCodecEncodeSpec, KvCodecExpect, LayerKV, ModelHandle, ResidentKvHandle, ResidentKvSpec, SpliceResult,
    SpliceSpec, WeftNativeAddon
} from "./native-addon-types.js";

export * from "./native-addon-types.js";

export type NativeAddonLoad = Capability<WeftNativeAddon>;

const addonRelativePath = path.join("native", "build", "Release", "weft_native.node");

/**
 * Where the addon may be: `native/` under the nearest ancestor of this module (main/engine/native/ from source
 * via tsx, dist/ or dist/electron/ from the bundles), app.asar.unpacked in a packaged app, or $WEFT_NATIVE_ADDON.
 */
export function nativeAddonCandidates(): string[] {
    const candidates: string[] = [];
    const override = process.env.WEFT_NATIVE_ADDON;
    if (override != null && override !== "")
        candidates.push(path.resolve(override));

    let dir = path.dirname(fileURLToPath(import.meta.url));
    for (let depth = 0; depth < 4 && dir !== path.dirname(dir); depth++, dir = path.dirname(dir)) {
        const candidate = path.join(dir, addonRelativePath);
        // A .node inside app.asar cannot be loaded: electron-builder's asarUnpack copy comes first.
        const unpacked = candidate.replace(`${path.sep}app.asar${path.sep}`, `${path.sep}app.asar.unpacked${path.sep}`);
        if (unpacked !== candidate)
            candidates.push(unpacked);
        candidates.push(candidate);
    }
    return [...new Set(candidates)];
}

let loaded: NativeAddonLoad | undefined;

/** Loads the addon once (a failure is remembered too); never throws. */
export function loadNativeAddon(): NativeAddonLoad {
    if (loaded !== undefined)
        return loaded;

    const candidates = nativeAddonCandidates();
    const found = candidates.find((candidate) => existsSync(candidate));
    if (found === undefined) {
        loaded = unavailable(`weft_native.node is not built (run \`node scripts/build-native.mjs\`); looked in ${candidates.join(", ")}`);
        return loaded;
    }

    try {
        const addon = createRequire(import.meta.url)(found) as WeftNativeAddon;
        loaded = available(addon);
    } catch (error) {
        loaded = unavailable(`could not load ${found}: ${(error as Error).message}`);
    }
    return loaded;
}

export class NativeAddonUnavailableError extends Error {
    override name = "NativeAddonUnavailableError";
}

function requireAddon(): WeftNativeAddon {
    const load = loadNativeAddon();
    if (!load.available)
        throw new NativeAddonUnavailableError(load.reason);
    return load.value;
}

// node-llama-cpp internals this file relies on (version pinned to 3.22.1 in package.json).
type DisposalPreventionHandle = {dispose(): void};
type DisposeGuard = {createPreventDisposalHandle(ignoreAwaitingDispose?: boolean): DisposalPreventionHandle};
type ContextInternals = {_ctx?: unknown, _backendContextDisposeGuard?: DisposeGuard};
/** node-llama-cpp's AddonContext methods the blend's recompute decode calls directly (patch 0001 lets its positions scatter). */
type AddonContextBatch = {
    initBatch(size: number): void;
    addToBatch(sequenceId: number, firstTokenPosition: number, tokens: Uint32Array, logitIndexes: Uint32Array): Uint32Array;
    decodeBatch(): Promise<void>;
    removeTokenCellsFromSequence(sequenceId: number, start: number, end: number): boolean;
};
const addonContextBatchMethods = ["initBatch", "addToBatch", "decodeBatch", "removeTokenCellsFromSequence"] as const;
type ModelInternals = {_model?: unknown, _backendModelDisposeGuard?: DisposeGuard};
type SequenceInternals = {
    _sequenceId: number,
    _contextTokens: Token[],
    _nextTokenIndex: number,
    _loadedTokenPredictions: unknown[],
    _tokenPredictorOwner: object,
    _abortTokenPredictor(skipClearingPredictionsFromState?: boolean): Promise<void>
};

/** `LlamaContext._ctx`, branded. Throws when node-llama-cpp no longer has it. */
export function contextHandleOf(context: LlamaContext): ContextHandle {
    const handle = (context as unknown as ContextInternals)._ctx;
    if (typeof handle !== "object" || handle === null)
        throw new Error("LlamaContext has no native _ctx (node-llama-cpp internals changed?)");
    return handle as ContextHandle;
}

/** `LlamaModel._model`, branded. Throws when node-llama-cpp no longer has it. */
export function modelHandleOf(model: LlamaModel): ModelHandle {
    const handle = (model as unknown as ModelInternals)._model;
    if (typeof handle !== "object" || handle === null)
        throw new Error("LlamaModel has no native _model (node-llama-cpp internals changed?)");
    return handle as ModelHandle;
}

/** node-llama-cpp's sequence id of a LlamaContextSequence (private `_sequenceId`). */
export function sequenceIdOf(sequence: LlamaContextSequence): number {
    const id = (sequence as unknown as SequenceInternals)._sequenceId;
    if (!Number.isInteger(id))
        throw new Error("LlamaContextSequence has no _sequenceId (node-llama-cpp internals changed?)");
    return id;
}

/**
 * Why this context cannot be driven directly by the blend path (node-llama-cpp's internals are not what this file
 * expects), or null. Checked once when a blend session opens, so a changed node-llama-cpp turns into a fallback with a
 * reason rather than an error in the middle of a question.
 */
export function contextInternalsProblem(context: LlamaContext): string | null {
    const internals = context as unknown as ContextInternals;
    if (typeof internals._ctx !== "object" || internals._ctx === null)
        return "LlamaContext has no native _ctx (node-llama-cpp internals changed?)";
    const missing = addonContextBatchMethods.filter((name) => typeof (internals._ctx as Record<string, unknown>)[name] !== "function");
    if (missing.length > 0)
        return `node-llama-cpp's AddonContext lacks ${missing.join(", ")} (internals changed?)`;
    if (typeof internals._backendContextDisposeGuard?.createPreventDisposalHandle !== "function")
        return "LlamaContext has no dispose guard (node-llama-cpp internals changed?)";
    return null;
}

/** Tokens to decode at consecutive positions from `firstPosition`, without logits. */
export type PositionedRun = {firstPosition: number, tokens: Uint32Array};

/**
 * Removes the sequence's cells in each `[start, end)` of `remove`, then decodes each batch of `batches` (runs of tokens
 * at their positions, which may be scattered with patch 0001) on node-llama-cpp's own context, holding its context lock
 * and dispose guard. node-llama-cpp's token bookkeeping is the caller's (see {@link markTokensEvaluated}).
 */
export async function decodeAtPositions(context: LlamaContext, sequenceId: number, remove: ReadonlyArray<readonly [number, number]>,
    batches: ReadonlyArray<readonly PositionedRun[]>): Promise<void> {
    if (context.disposed)
        throw new Error("the context is disposed");
    const internals = context as unknown as ContextInternals;
    const ctx = contextHandleOf(context) as unknown as AddonContextBatch;
    await withDisposalPrevented(internals._backendContextDisposeGuard, () => withContextLock(context, async () => {
        for (const [start, end] of remove)
            ctx.removeTokenCellsFromSequence(sequenceId, start, end);
        for (const batch of batches) {
            ctx.initBatch(batch.reduce((sum, run) => sum + run.tokens.length, 0));
            for (const run of batch)
                ctx.addToBatch(sequenceId, run.firstPosition, run.tokens, new Uint32Array(0));
            await ctx.decodeBatch();
        }
    }));
}

/** Each context's own batch (llama.cpp's n_batch and n_ubatch) where {@link limitEvaluationBatch} lowered node-llama-cpp's. */
const decodeBatchSizes = new WeakMap<LlamaContext, number>();

/**
 * node-llama-cpp makes a context's batch size its ubatch too, and feeds each of its own decodes (a prompt's prefill,
 * the question, generation) up to that many tokens. This keeps the context's ubatch and makes node-llama-cpp feed at
 * most `tokens` per decode, so its prefill runs as several ubatches whose host work overlaps the device's, while
 * Weft's own decodes (the fused blend's, chunk-head's recompute) may still fill the whole ubatch:
 * {@link decodeBatchSize} gives it.
 */
export function limitEvaluationBatch(context: LlamaContext, tokens: number): void {
    const internals = context as unknown as {_batchSize?: unknown};
    if (typeof internals._batchSize !== "number")
        throw new Error("node-llama-cpp's LlamaContext has no _batchSize: limitEvaluationBatch needs updating for this version");
    const own = decodeBatchSizes.get(context) ?? internals._batchSize;
    decodeBatchSizes.set(context, own);
    internals._batchSize = Math.max(1, Math.min(Math.floor(tokens), own));
}

/** The most tokens one llama_decode of Weft's may hold on `context` (its ubatch), whatever node-llama-cpp feeds. */
export function decodeBatchSize(context: LlamaContext): number {
    return decodeBatchSizes.get(context) ?? context.batchSize;
}

/** Keeps the native object from being disposed while `run` uses it (node-llama-cpp's own dispose guards). */
async function withDisposalPrevented<T>(guard: DisposeGuard | undefined, run: () => Promise<T>): Promise<T> {
    const handle = guard?.createPreventDisposalHandle();
    try {
        return await run();
    } finally {
        handle?.dispose();
    }
}

/** The raw in-memory state blob of sequence `sequenceId` of `context` (no token bookkeeping). */
export async function getContextSequenceState(context: LlamaContext, sequenceId: number): Promise<Buffer> {
    const addon = requireAddon();
    if (context.disposed)
        throw new Error("the context is disposed");
    return withDisposalPrevented((context as unknown as ContextInternals)._backendContextDisposeGuard,
        () => withContextLock(context, () => addon.getSequenceState(contextHandleOf(context), sequenceId)));
}

/** Loads a raw state blob into sequence `sequenceId` of `context` (no token bookkeeping); resolves to the bytes read. */
export async function setContextSequenceState(context: LlamaContext, sequenceId: number, state: Uint8Array): Promise<number> {
    const addon = requireAddon();
    if (context.disposed)
        throw new Error("the context is disposed");
    return withDisposalPrevented((context as unknown as ContextInternals)._backendContextDisposeGuard,
        () => withContextLock(context, () => addon.setSequenceState(contextHandleOf(context), sequenceId, state)));
}

/**
 * Loads a state blob into a sequence (the engine splices instead; the tests load references with it, and it stays here
 * because it touches node-llama-cpp's internals) and tells node-llama-cpp which tokens it now holds (as its own
 * loadStateFromFile does), so later `evaluate` / `controlledEvaluate` calls continue after them. `tokens` must be the
 * tokens the blob's cells hold, in position order. On failure the sequence is left empty (llama.cpp clears it).
 */
export async function loadSequenceState(sequence: LlamaContextSequence, state: Uint8Array, tokens: readonly Token[]): Promise<number> {
    return replaceSequenceKv(sequence, tokens, (sequenceId) => setContextSequenceState(sequence.context, sequenceId, state));
}

/**
 * Builds the sequence's KV from parts natively (see {@link SpliceSpec}) and loads it, with the same token bookkeeping
 * as {@link loadSequenceState}. On failure the sequence is left empty.
 */
export async function spliceSequenceState(sequence: LlamaContextSequence, spec: SpliceSpec, tokens: readonly Token[]): Promise<SpliceResult> {
    const addon = requireAddon();
    const context = sequence.context;
    return replaceSequenceKv(sequence, tokens, (sequenceId) => {
        if (context.disposed)
            throw new Error("the context is disposed");
        return withDisposalPrevented((context as unknown as ContextInternals)._backendContextDisposeGuard,
            () => withContextLock(context, () => addon.spliceSequenceState(contextHandleOf(context), sequenceId, spec)));
    });
}

/** Whether resident KVs can be used in this process (the addon is loaded and llama.cpp has Weft's patch 0002). */
export function residentKvSupported(): boolean {
    const load = loadNativeAddon();
    return load.available && typeof load.value.residentKvSupported === "function" && load.value.residentKvSupported();
}

/** Keeps `spec`'s rows in buffers of `sequence`'s context's KV cache type (device memory on a GPU build). */
export async function uploadResidentKv(sequence: LlamaContextSequence, spec: ResidentKvSpec): Promise<ResidentKvHandle> {
    const addon = requireAddon();
    const context = sequence.context;
    if (context.disposed)
        throw new Error("the context is disposed");
    return withDisposalPrevented((context as unknown as ContextInternals)._backendContextDisposeGuard,
        () => withContextLock(context, () => addon.residentKvUpload(contextHandleOf(context), sequenceIdOf(sequence), spec)));
}

/** Frees a resident KV's buffers; returns the bytes freed. */
export function releaseResidentKv(handle: ResidentKvHandle): number {
    return requireAddon().residentKvRelease(handle);
}

/** Whether the fused blend decode can run in this process (the addon is loaded and llama.cpp has Weft's patch 0003). */
export function fusedBlendSupported(): boolean {
    const load = loadNativeAddon();
    return load.available && typeof load.value.fusedBlendSupported === "function" && load.value.fusedBlendSupported();
}

/**
 * A fused blend's decodes on `sequence` (see {@link FusedBlendSpec}), under the context's lock. The sequence's token
 * list is not changed: the decoded positions already belong to it (their cells are overwritten, or new cells made for
 * forced segments the caller then reports with {@link markTokensEvaluated}).
 */
export async function fusedBlendDecode(sequence: LlamaContextSequence, spec: FusedBlendSpec): Promise<FusedBlendResult> {
    const addon = requireAddon();
    const context = sequence.context;
    if (context.disposed)
        throw new Error("the context is disposed");
    return withDisposalPrevented((context as unknown as ContextInternals)._backendContextDisposeGuard,
        () => withContextLock(context, () => addon.fusedBlendDecode(contextHandleOf(context), sequenceIdOf(sequence), spec)));
}

/**
 * Where `context`'s ordinary decodes build their causal mask (patch 0008): `auto`, llama.cpp's default under it, builds
 * it in the graph for prefill ubatches when the KV cache is on a GPU; `host` is upstream's fill; `graph` forces the
 * in-graph mask wherever the ubatch allows it (tests compare the two on a CPU). Resolves to false where the addon or
 * the patch is missing (the host fill then stays).
 */
export async function setDecodeMaskMode(context: LlamaContext, mode: DecodeMaskMode): Promise<boolean> {
    return withContextSetting(context, "setDecodeMaskMode", (addon, handle) => addon.setDecodeMaskMode(handle, mode), false);
}

/**
 * Whether the context's memory updates (the K-shift of cells a blend placed at new positions) are followed by upstream
 * llama.cpp's reserve of the worst-case graph (Weft patch 0009; off by default in a patched build, where the next
 * decode sizes its own graph). Resolves to the previous setting, or null where the addon or the patch is missing.
 */
export async function setUpdateReserve(context: LlamaContext, reserve: boolean): Promise<boolean | null> {
    return withContextSetting(context, "setUpdateReserve", (addon, handle) => addon.setUpdateReserve(handle, reserve), null);
}

/** Calls an addon setter of a context under its lock; `missing` where the addon or that function is not there. */
async function withContextSetting<T>(context: LlamaContext, name: "setDecodeMaskMode" | "setUpdateReserve",
    set: (addon: WeftNativeAddon, handle: ContextHandle) => T, missing: T): Promise<T> {
    const load = loadNativeAddon();
    if (!load.available || typeof load.value[name] !== "function")
        return missing;
    const addon = load.value;
    if (context.disposed)
        throw new Error("the context is disposed");
    return withDisposalPrevented((context as unknown as ContextInternals)._backendContextDisposeGuard,
        () => withContextLock(context, async () => set(addon, contextHandleOf(context))));
}

/** hkvd's deviation scores, natively (see {@link DeviationSpec}). */
export async function kvDeviation(spec: DeviationSpec): Promise<Float32Array> {
    return requireAddon().kvDeviation(spec);
}

/**
 * Tells node-llama-cpp that the sequence now also holds `tokens` after the ones it knew of, evaluated outside its
 * API (the blend's recompute decode), so its next evaluation continues after them.
 */
export function markTokensEvaluated(sequence: LlamaContextSequence, tokens: readonly Token[]): void {
    const internals = sequence as unknown as SequenceInternals;
    internals._contextTokens = [...internals._contextTokens, ...tokens];
    internals._nextTokenIndex = internals._contextTokens.length;
}

async function replaceSequenceKv<T>(sequence: LlamaContextSequence, tokens: readonly Token[], load: (sequenceId: number) => Promise<T>): Promise<T> {
    if (tokens.length > sequence.contextSize)
        throw new Error(`${tokens.length} tokens do not fit the sequence's context of ${sequence.contextSize}`);
    // Empty it the public way first (KV cells and node-llama-cpp's token list together), so that any failure below
    // leaves a consistent, empty sequence.
    await sequence.clearHistory();
    const internals = sequence as unknown as SequenceInternals;
    internals._tokenPredictorOwner = {};
    await internals._abortTokenPredictor(true);
    internals._loadedTokenPredictions.length = 0;
    internals._contextTokens = [];
    internals._nextTokenIndex = 0;
    const result = await load(internals._sequenceId);
    internals._contextTokens = tokens.slice();
    internals._nextTokenIndex = tokens.length;
    return result;
}

type WithLock = <T>(scope: readonly [object, string], callback: () => Promise<T> | T) => Promise<T>;
let contextLock: WithLock | undefined;

/**
 * Runs `run` holding node-llama-cpp's own lock on the context (`withLock([context, "context"])` from the
 * lifecycle-utils copy node-llama-cpp itself loads, so it is the same lock): its batch dispatcher never decodes on
 * the context while the addon or a direct decode touches it. Not reentrant: call no node-llama-cpp API that
 * evaluates or erases on this context inside `run`.
 */
export async function withContextLock<T>(context: LlamaContext, run: () => Promise<T>): Promise<T> {
    if (contextLock == null) {
        // Imported (not required) by its file URL, so the ES module loader hands back the very instance node-llama-cpp
        // imported, whose lock table is the one that counts.
        const file = createRequire(createRequire(import.meta.url).resolve("node-llama-cpp")).resolve("lifecycle-utils");
        contextLock = ((await import(pathToFileURL(file).href)) as {withLock: WithLock}).withLock;
    }
    return contextLock([context, "context"], run);
}

const modelsWithReleaseHook = new WeakSet<LlamaModel>();

/**
 * Layer `layer` K/V of `tokens`, computed on a private context of `model` (cached per model and settings and
 * released when the model is disposed, or by {@link releaseLayerCaptureContexts}).
 */
export async function captureLayerKV(model: LlamaModel, tokens: readonly Token[] | Uint32Array | Int32Array, layer: number,
    options: CaptureLayerOptions): Promise<LayerKV> {
    const addon = requireAddon();
    if (model.disposed)
        throw new Error("the model is disposed");
    const handle = modelHandleOf(model);
    if (!modelsWithReleaseHook.has(model)) {
        modelsWithReleaseHook.add(model);
        // onDispose fires before node-llama-cpp frees the llama_model, so the private contexts go first.
        model.onDispose.createListener(() => {
            addon.releaseLayerCaptureContexts(handle);
        });
    }
    const tokenArray = tokens instanceof Uint32Array || tokens instanceof Int32Array ? tokens : Uint32Array.from(tokens);
    return withDisposalPrevented((model as unknown as ModelInternals)._backendModelDisposeGuard,
        () => addon.captureLayerKV(handle, tokenArray, layer, options));
}

/** Frees the cached private capture contexts of `model` (or of every model); returns how many. */
export function releaseLayerCaptureContexts(model?: LlamaModel): number {
    const load = loadNativeAddon();
    if (!load.available)
        return 0;
    return load.value.releaseLayerCaptureContexts(model === undefined ? undefined : modelHandleOf(model));
}

/** The KV codec's encoder (see {@link KvCodecEncodeSpec}); kv-codec.ts maps cache bodies onto it. */
export async function kvCodecEncode(spec: KvCodecEncodeSpec): Promise<KvCodecEncodeResult> {
    return requireAddon().kvCodecEncode(spec);
}

/** The KV codec's decoder, off the JS thread. */
export async function kvCodecDecode(bytes: Uint8Array, expect: KvCodecExpect): Promise<KvCodecDecodeResult> {
    return requireAddon().kvCodecDecode(bytes, expect);
}

/** The KV codec's decoder on the calling thread (small containers, tests). */
export function kvCodecDecodeSync(bytes: Uint8Array, expect: KvCodecExpect): KvCodecDecodeResult {
    return requireAddon().kvCodecDecodeSync(bytes, expect);
}

/** A container's header checked without decoding it (on the calling thread: a few hundred bytes). */
export function kvCodecPeek(bytes: Uint8Array, expect: KvCodecExpect): KvCodecPeekResult {
    return requireAddon().kvCodecPeek(bytes, expect);
}

export function kvCodecLevels(): {count: number, defaultLevel: number, formatVersion: number} {
    return requireAddon().kvCodecLevels();
}
