// The per-answer stats are a pure function of what was prepared and measured: the invariant of the contract holds,
// the prefill cost per token is a moving average over full prefills only, and the rates leave the first token out.
import assert from "node:assert/strict";
import {describe, test} from "node:test";
import {AnswerStats} from "../../main/contract/index.js";
import type {PreparedPrompt} from "../../main/engine/blend/prepare.js";
import {answerStats, prefillCostMinTokens, prefillCostNewWeight, updatedPrefillMsPerToken} from "../../main/engine/chat/answer-stats.js";

const prepared: PreparedPrompt = {
    strategy: "hkvd", ratio: 0.15, tokensToEvaluate: [], reusedTokens: 800, recomputedTokens: 150, freshTokens: 50,
    kvBytesLoaded: 64e6, kvLoadMs: 8, kvBlobBytes: 64e6, kvResidentBytes: 0, kvResidentMs: 0, selectMs: 12, recomputeMs: 30
};

describe("answer stats", () => {
    test("a full prefill of enough tokens moves the cost per token by the new weight; others leave it", () => {
        const full = {reusedTokens: 0, freshTokens: 100};
        assert.equal(updatedPrefillMsPerToken(undefined, full, 200), 2);
        assert.equal(updatedPrefillMsPerToken(2, full, 400), (1 - prefillCostNewWeight) * 2 + prefillCostNewWeight * 4);
        assert.equal(updatedPrefillMsPerToken(2, {reusedTokens: 10, freshTokens: 100}, 400), 2, "a reusing prefill says nothing about the full cost");
        assert.equal(updatedPrefillMsPerToken(2, {reusedTokens: 0, freshTokens: prefillCostMinTokens - 1}, 400), 2, "too short to measure");
        assert.equal(updatedPrefillMsPerToken(undefined, full, 0), undefined);
    });

    test("stats satisfy the contract, with TTFT from the question's arrival and the rate after the first token", () => {
        const stats = answerStats({
            backend: "cpu", modelId: "m", prepared, promptTokens: 1000, completionTokens: 11, prefillMsPerToken: 0.5,
            times: {startedAt: 1000, firstTokenAt: 1300, finishedAt: 2300, modelLoadMs: 5, retrievalMs: 20, prefillMs: 60}
        });
        AnswerStats.parse(stats);
        assert.equal(stats.reusedTokens + stats.recomputedTokens + stats.freshTokens, stats.promptTokens);
        assert.equal(stats.ttftMs, 300);
        assert.equal(stats.totalMs, 1300);
        assert.equal(stats.tokensPerSecond, 10, "10 tokens after the first in 1 s");
        assert.equal(stats.fullPrefillEstimateMs, 500);
        assert.equal(stats.kvLoadGBps, 8);
        assert.equal(stats.strategyFallbackReason, undefined);
    });

    test("without a first token, TTFT is the whole answer's time and the rate is 0; a fallback reason is kept", () => {
        const stats = answerStats({
            backend: "cuda", modelId: "m", prepared: {...prepared, fallbackReason: "why"}, promptTokens: 1000, completionTokens: 0,
            prefillMsPerToken: undefined, times: {startedAt: 0, firstTokenAt: null, finishedAt: 40, modelLoadMs: 0, retrievalMs: 0, prefillMs: 20}
        });
        assert.equal(stats.ttftMs, 40);
        assert.equal(stats.tokensPerSecond, 0);
        assert.equal(stats.strategyFallbackReason, "why");
        assert.equal(stats.fullPrefillEstimateMs, 20 / 50 * 1000, "estimated from this prefill when nothing was measured yet");
    });
});
