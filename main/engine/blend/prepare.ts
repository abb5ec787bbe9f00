import type {LlamaContextSequence, Token} from "node-llama-cpp";
import type {ChunkKvStats, Strategy} from "../../contract/index.js";
import type {FocusOptions} from "./focus.js";

/** How the prompt's KV cache was set up before the remaining tokens are evaluated. */
export type PreparedPrompt = {
    strategy: Strategy;
    ratio: number;
    fallbackReason?: string;
    /** Appended to the sequence as it now stands, these complete the prompt. */
    tokensToEvaluate: Token[];
    reusedTokens: number;
    recomputedTokens: number;
    /** Prompt tokens evaluated from scratch, tokensToEvaluate included. */
    freshTokens: number;
    kvBytesLoaded: number;
    kvLoadMs: number;
    /** Bytes of host-memory KV the splice wrote, through a state blob or in place (0 when every part came from the resident tier). */
    kvBlobBytes: number;
    /** Bytes placed from the resident tier with device-to-device copies, and the time that took. */
    kvResidentBytes: number;
    kvResidentMs: number;
    selectMs: number;
    recomputeMs: number;
    /** Per chunk, where its KV came from (blend strategies). */
    chunkKv?: ChunkKvStats[];
    /** Bytes read from the disk tier. */
    kvBytesRead?: number;
    /** hkvd: the chunk positions its fused decode recomputed through every layer, ascending (labels and the question not included). */
    selectedPositions?: number[];
    /** The sources ([n]) recomputed whole because the question is about them (focus.ts; hkvd and chunk-head). */
    focusSources?: number[];
    /**
     * The sources ([n]) whose KV came as their lead version (ChunkKvSource.leadKv: the prompt's first source, exactly a
     * full prefill's KV), reused without repair.
     */
    exactSources?: number[];
    /**
     * Chunks for BlendSession.cacheChunks after the answer: those with no cached KV that a full-prefill fallback left,
     * and disk chunks the splice decoded straight into the cells (into the RAM tier then, for the next question).
     */
    uncachedChunks?: Token[][];
};

/** The native splice of a blend, step by step: state bytes built, time to build and load them, the resident tier's part. */
export type SpliceTrace = {
    blobBytes: number, buildMs: number, setMs: number, pinned: boolean, inPlace: boolean, residentBytes: number, residentMs: number,
    residentCopies: number, residentPlaceMs: number, residentQueueMs: number, residentSyncMs: number,
    /** Disk chunks decoded straight into their cells: their F16 bytes, and the decoding's time summed over threads. */
    codedBytes: number, codedMs: number
};

/** hkvd's selection: the prompt positions it chose, and its time split into the capture pass (its decodes, and copying K/V out of them) and the scoring. */
export type SelectTrace = {
    positions: readonly number[], captureMs: number, captureDecodeMs: number, captureCopyMs: number, captureDecodes: number, scoreMs: number
};

/**
 * hkvd's fused decodes (selection and recompute in one pass, Weft patch 0003): how many, their total time (the final
 * wait for the device included) and each one's host time in llama_weft_blend_decode (the first also applies the placed
 * cells' K-shift).
 */
export type FusedTrace = {decodes: number, decodeMs: number, decodeMsEach: number[], phaseMsEach?: number[][]};

/**
 * An optional sink for a blend's per-step timings (the GPU benchmark reads them; the product passes none).
 * fusedPhases asks the fused decodes for their host phases, which makes each decode wait for the device.
 */
export type BlendTrace = {splice?(trace: SpliceTrace): void, select?(trace: SelectTrace): void, fused?(trace: FusedTrace): void, fusedPhases?: boolean};

/** Per-question options of {@link BlendSession.prepare}. */
export type BlendPrepareOptions = {
    /** Build the spliced state in pinned host memory when a GPU backend is loaded (default; benchmarks compare without). */
    pinned?: boolean;
    /** Where hkvd's fused decode builds its causal mask (default "auto": see FusedBlendSpec.mask); both give the same mask. */
    fusedMask?: "auto" | "host" | "graph";
    /** hkvd's check layer (default blend.ts selectionLayer); the answers benchmark compares others. */
    checkLayer?: number;
    trace?: BlendTrace;
    /**
     * Which chunks `chunk-head` and `hkvd` recompute whole because the question is about them (focus.ts), on top of
     * their share of every other chunk; default focus.ts defaultFocus. `{count: 0}` turns it off.
     */
    focus?: FocusOptions;
    /**
     * When chunks have no cached KV anywhere (a question right after an ingest, before background warming reached
     * them) and computing them alone would take longer than (1 - ratio) of `fullPrefillMs` at the measured rate of
     * chunk prefills (the blend's repair, at least its ratio's share of a prefill, comes on top), answer with a full
     * prefill and say so; the prepared prompt lists those chunks (`uncachedChunks`) for BlendSession.cacheChunks after
     * the answer. Nothing is decided before both rates are measured. On this CPU with a 512-wide model, computing 4k
     * tokens' chunks alone took 0.54 of their full prefill (attention is most of it at that width), and blending
     * uncached was sooner (bench/RESULTS.md, session 12). `auto` asks for it; a strategy asked for by name blends
     * anyway (default false).
     */
    uncachedFallback?: boolean;
    /**
     * What a full prefill of this prompt should take on this context (the engine's measured rate); when loading the
     * chunks that are only on disk would take longer, the prompt is prefilled in full instead (stats say why).
     */
    fullPrefillMs?: number;
};

const noCacheWork = {recomputedTokens: 0, kvBytesLoaded: 0, kvLoadMs: 0, kvBlobBytes: 0, kvResidentBytes: 0, kvResidentMs: 0, selectMs: 0, recomputeMs: 0};

/** Baseline: the whole prompt is evaluated from scratch. */
export async function prepareFull(sequence: LlamaContextSequence, promptTokens: Token[]): Promise<PreparedPrompt> {
    await sequence.clearHistory();
    return {strategy: "full", ratio: 0, tokensToEvaluate: promptTokens, reusedTokens: 0, freshTokens: promptTokens.length, ...noCacheWork};
}

/** A full prefill in place of a blend, saying why; every chunk counts as recomputed. */
export async function prepareFullInstead(sequence: LlamaContextSequence, promptTokens: Token[], chunks: ReadonlyArray<{segment: {tokens: readonly Token[]}}>,
    why: string): Promise<PreparedPrompt> {
    return {
        ...await prepareFull(sequence, promptTokens), fallbackReason: `${why}; used full prefill`, kvBytesRead: 0,
        chunkKv: chunks.map(({segment}) => ({kvSource: "recompute" as const, codecLevel: null, tokens: segment.tokens.length, bytesRead: 0}))
    };
}

/**
 * Exact prefix reuse (what llama.cpp's prompt cache and vLLM's prefix caching do): the KV of the longest
 * common prefix with the sequence's previous prompt stays; only the rest is evaluated. At least one token
 * is always evaluated, since the next token's logits come from the last prompt token.
 */
export async function preparePrefix(sequence: LlamaContextSequence, promptTokens: Token[]): Promise<PreparedPrompt> {
    const previous = sequence.contextTokens;
    let common = 0;
    const limit = Math.min(previous.length, promptTokens.length - 1);
    while (common < limit && previous[common] === promptTokens[common])
        common++;

    if (common === 0)
        await sequence.clearHistory();
    else if (common < sequence.nextTokenIndex)
        await sequence.eraseContextTokenRanges([{start: common, end: sequence.nextTokenIndex}]);

    return {
        strategy: "prefix", ratio: 0, tokensToEvaluate: promptTokens.slice(common), reusedTokens: common,
        freshTokens: promptTokens.length - common, ...noCacheWork
    };
}
