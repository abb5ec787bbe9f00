import type {LlamaContextSequence, Token} from "node-llama-cpp";
import type {Strategy} from "../../contract/index.js";

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
    selectMs: number;
    recomputeMs: number;
    /**
     * The native splice of a blend: state bytes built, time to build them and to load them (host-to-device on a GPU),
     * and the resident tier's part: bytes placed with device-to-device copies and the time that took.
     */
    splice?: {
        blobBytes: number, buildMs: number, setMs: number, pinned: boolean, residentBytes: number, residentMs: number,
        residentPlaceMs: number, residentQueueMs: number, residentSyncMs: number
    };
    /** hkvd's selection, split: the capture pass (its decodes, and copying K/V out of them) and the scoring. */
    selectDetail?: {captureMs: number, captureDecodeMs: number, captureCopyMs: number, captureDecodes: number, scoreMs: number};
    /** hkvd's fused blend decode (selection and recompute in one pass, Weft patch 0003): its decodes and the chunk positions it recomputed. */
    fused?: {decodes: number, decodeMs: number, selectedPositions: number[]};
};

const noCacheWork = {recomputedTokens: 0, kvBytesLoaded: 0, kvLoadMs: 0, selectMs: 0, recomputeMs: 0};

/** Baseline: the whole prompt is evaluated from scratch. */
export async function prepareFull(sequence: LlamaContextSequence, promptTokens: Token[]): Promise<PreparedPrompt> {
    await sequence.clearHistory();
    return {strategy: "full", ratio: 0, tokensToEvaluate: promptTokens, reusedTokens: 0, freshTokens: promptTokens.length, ...noCacheWork};
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
