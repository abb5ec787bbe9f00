import type {AnswerStats as Stats} from "../../main/contract/index.js";
import {formatCount, formatMs, formatRate} from "./format.js";

type Item = {key: keyof Stats; label: string; value: number | string; text: string; hint?: string};

/** The per-answer numbers: each value carries `data-stat` (its field name) and `data-value` (the raw number). */
export function AnswerStats({stats}: {stats: Stats}) {
    const items: Item[] = [
        {
            key: "promptTokens", label: "Prompt", value: stats.promptTokens, text: `${formatCount(stats.promptTokens)} tok`,
            hint: "Tokens in the prompt (question, retrieved passages and template)"
        },
        {key: "completionTokens", label: "Answer", value: stats.completionTokens, text: `${formatCount(stats.completionTokens)} tok`},
        {key: "ttftMs", label: "First token", value: stats.ttftMs, text: formatMs(stats.ttftMs), hint: "Time to first token"},
        {
            key: "modelLoadMs", label: "Model load", value: stats.modelLoadMs, text: formatMs(stats.modelLoadMs),
            hint: "Time spent loading the model for this answer (part of the first-token time)"
        },
        {key: "retrievalMs", label: "Retrieval", value: stats.retrievalMs, text: formatMs(stats.retrievalMs)},
        {key: "prefillMs", label: "Prefill", value: stats.prefillMs, text: formatMs(stats.prefillMs), hint: "Evaluating the prompt"},
        {key: "totalMs", label: "Total", value: stats.totalMs, text: formatMs(stats.totalMs)},
        {key: "tokensPerSecond", label: "Speed", value: stats.tokensPerSecond, text: formatRate(stats.tokensPerSecond)},
        {key: "backend", label: "Backend", value: stats.backend, text: stats.backend},
        {
            key: "strategy", label: "KV strategy", value: stats.strategy, text: stats.strategy,
            hint: stats.strategyFallbackReason ?? "How the prompt's KV cache was obtained"
        },
        {key: "reusedTokens", label: "Reused", value: stats.reusedTokens, text: formatCount(stats.reusedTokens), hint: "Prompt tokens whose KV came from a cache as is"},
        {key: "recomputedTokens", label: "Recomputed", value: stats.recomputedTokens, text: formatCount(stats.recomputedTokens), hint: "Prompt tokens whose cached KV was recomputed"},
        {key: "freshTokens", label: "Fresh", value: stats.freshTokens, text: formatCount(stats.freshTokens), hint: "Prompt tokens evaluated from scratch"},
        {
            key: "fullPrefillEstimateMs", label: "Full prefill (est.)", value: stats.fullPrefillEstimateMs, text: formatMs(stats.fullPrefillEstimateMs),
            hint: "What evaluating the whole prompt would have taken, from this model's measured prefill rate"
        }
    ];
    // Cache loading and selective recompute only happen on the blend path; zeros would just be noise.
    if (stats.kvBytesLoaded > 0 || stats.recomputedTokens > 0 || stats.kvResidentBytes > 0)
        items.push(
            {key: "ratio", label: "Recompute ratio", value: stats.ratio, text: stats.ratio.toFixed(2)},
            {key: "kvLoadMs", label: "KV load", value: stats.kvLoadMs, text: formatMs(stats.kvLoadMs), hint: `${formatCount(stats.kvBytesLoaded)} bytes`},
            {key: "kvLoadGBps", label: "KV load rate", value: stats.kvLoadGBps, text: `${stats.kvLoadGBps.toFixed(2)} GB/s`},
            {
                key: "kvResidentMs", label: "GPU-resident KV", value: stats.kvResidentMs, text: formatMs(stats.kvResidentMs),
                hint: `${formatCount(stats.kvResidentBytes)} bytes copied device to device from the GPU-resident tier`
            },
            {key: "selectMs", label: "Select", value: stats.selectMs, text: formatMs(stats.selectMs), hint: "Choosing the tokens to recompute"},
            {key: "recomputeMs", label: "Recompute", value: stats.recomputeMs, text: formatMs(stats.recomputeMs)}
        );
    const exact = stats.exactSources ?? [];
    const whole = (stats.focusSources ?? []).filter((n) => !exact.includes(n));
    if (whole.length > 0)
        items.push({
            key: "focusSources", label: "Recomputed whole", value: whole.join(","), text: whole.map((n) => `[${n}]`).join(" "),
            hint: "Sources the question is about, recomputed in full: the one sharing its rarest words, the one continuing it, the one a name links to it"
        });
    if (exact.length > 0)
        items.push({
            key: "exactSources", label: "Exact as cached", value: exact.join(","), text: exact.map((n) => `[${n}]`).join(" "),
            hint: "The first source, cached after the prompt's header and its own label: exactly a full prefill's KV, nothing to recompute"
        });

    return (
        <section className="answer-stats" data-testid="answer-stats" aria-label="Answer statistics">
            <dl>
                {items.map((item) => (
                    <div className="stat" key={item.key} title={item.hint}>
                        <dt>{item.label}</dt>
                        <dd data-stat={item.key} data-value={String(item.value)}>{item.text}</dd>
                    </div>
                ))}
            </dl>
            {stats.strategyFallbackReason !== undefined && (
                <p className="stats-note">Strategy fell back: {stats.strategyFallbackReason}</p>
            )}
        </section>
    );
}
