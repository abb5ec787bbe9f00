import type {AnswerStats, Backend} from "../../contract/index.js";
import type {PreparedPrompt} from "../blend/prepare.js";

/** Weight of the newest full prefill in the moving average of a model's prefill cost per token. */
export const prefillCostNewWeight = 0.3;
/** Prefills shorter than this many fresh tokens say little about the cost per token (fixed overheads dominate). */
export const prefillCostMinTokens = 16;

/**
 * A model's measured prefill cost per token after one more answer: only prefills that reused nothing and evaluated at
 * least {@link prefillCostMinTokens} tokens count, averaged with weight {@link prefillCostNewWeight} for the newest.
 */
export function updatedPrefillMsPerToken(previous: number | undefined, prepared: Pick<PreparedPrompt, "reusedTokens" | "freshTokens">,
    prefillMs: number): number | undefined {
    if (prepared.reusedTokens !== 0 || prepared.freshTokens < prefillCostMinTokens || prefillMs <= 0)
        return previous;
    const measured = prefillMs / prepared.freshTokens;
    return previous == null ? measured : (1 - prefillCostNewWeight) * previous + prefillCostNewWeight * measured;
}

export type AnswerTimes = {
    /** performance.now() when the question arrived, when the first token came (null: none), when the answer ended. */
    startedAt: number, firstTokenAt: number | null, finishedAt: number,
    modelLoadMs: number, retrievalMs: number, prefillMs: number
};

/** The stats of one answer, from what was prepared and measured (see the contract's AnswerStats for each field). */
export function answerStats(input: {
    backend: Backend, modelId: string, prepared: PreparedPrompt, promptTokens: number, completionTokens: number,
    times: AnswerTimes, prefillMsPerToken: number | undefined
}): AnswerStats {
    const {prepared, times} = input;
    const ttftMs = (times.firstTokenAt ?? times.finishedAt) - times.startedAt;
    const decodeSeconds = times.firstTokenAt != null ? (times.finishedAt - times.firstTokenAt) / 1000 : 0;
    const msPerToken = input.prefillMsPerToken ?? times.prefillMs / Math.max(1, prepared.freshTokens);
    return {
        backend: input.backend,
        modelId: input.modelId,
        strategy: prepared.strategy,
        ratio: prepared.ratio,
        ...(prepared.fallbackReason != null ? {strategyFallbackReason: prepared.fallbackReason} : {}),
        promptTokens: input.promptTokens,
        reusedTokens: prepared.reusedTokens,
        recomputedTokens: prepared.recomputedTokens,
        freshTokens: prepared.freshTokens,
        completionTokens: input.completionTokens,
        kvBytesLoaded: prepared.kvBytesLoaded,
        kvLoadMs: prepared.kvLoadMs,
        kvLoadGBps: prepared.kvLoadMs > 0 ? prepared.kvBytesLoaded / 1e6 / prepared.kvLoadMs : 0,
        kvResidentBytes: prepared.kvResidentBytes,
        kvResidentMs: prepared.kvResidentMs,
        ...(prepared.chunkKv != null ? {chunkKv: prepared.chunkKv, kvBytesRead: prepared.kvBytesRead ?? 0} : {}),
        ...(prepared.focusSources != null ? {focusSources: prepared.focusSources} : {}),
        ...(prepared.exactSources != null && prepared.exactSources.length > 0 ? {exactSources: prepared.exactSources} : {}),
        selectMs: prepared.selectMs,
        recomputeMs: prepared.recomputeMs,
        fullPrefillEstimateMs: msPerToken * input.promptTokens,
        modelLoadMs: times.modelLoadMs,
        retrievalMs: times.retrievalMs,
        prefillMs: times.prefillMs,
        ttftMs,
        totalMs: times.finishedAt - times.startedAt,
        // The first token's time is in ttftMs: the rate counts the tokens after it.
        tokensPerSecond: decodeSeconds > 0 && input.completionTokens > 1 ? (input.completionTokens - 1) / decodeSeconds : 0
    };
}
