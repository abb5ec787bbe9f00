import {useId, useState} from "react";
import type {AnswerStats as Stats} from "../../../main/contract/index.js";
import {AnswerStats} from "../AnswerStats.js";
import {formatCount, formatMs} from "../format.js";

/** How many times sooner the first token came than a full prefill of the same prompt would have taken (estimate). */
export function speedUp(stats: Stats): number | null {
    return stats.ttftMs > 0 && stats.fullPrefillEstimateMs > 0 ? stats.fullPrefillEstimateMs / stats.ttftMs : null;
}

/**
 * One line under an answer: first-token time, the speed-up against the full-prefill estimate, where the prompt's KV
 * came from, and the strategy. "Details" opens the full breakdown.
 */
export function AnswerStrip({stats}: {stats: Stats}) {
    const [open, setOpen] = useState(false);
    const detailsId = useId();
    const ratio = speedUp(stats);
    return (
        <section className="answer-strip" aria-label="Answer summary">
            <div className="strip-line">
                <span className="strip-item" title="Time to first token, model loading and retrieval included">
                    First token <strong data-strip="ttft">{formatMs(stats.ttftMs)}</strong>
                </span>
                {ratio !== null && (
                    <span className="strip-item" title={`A full prefill of the ${formatCount(stats.promptTokens)}-token prompt: about ${formatMs(stats.fullPrefillEstimateMs)}`}>
                        <strong data-strip="speedup">{ratio >= 10 ? ratio.toFixed(0) : ratio.toFixed(1)}×</strong> vs full prefill (est.)
                    </span>
                )}
                <span className="strip-item" title="Prompt tokens: KV reused from cache / cached but recomputed / evaluated from scratch">
                    <span data-strip="tokens">
                        {formatCount(stats.reusedTokens)} reused · {formatCount(stats.recomputedTokens)} recomputed · {formatCount(stats.freshTokens)} fresh
                    </span>
                </span>
                <span className="strip-item strategy" data-strip="strategy" title={stats.strategyFallbackReason ?? "KV strategy"}>
                    {stats.strategy}{stats.strategyFallbackReason !== undefined && " ⚠"}
                </span>
                <button
                    type="button"
                    className="link-button strip-toggle"
                    aria-expanded={open}
                    aria-controls={detailsId}
                    onClick={() => setOpen(!open)}
                >
                    {open ? "Hide details" : "Details"}
                </button>
            </div>
            <div id={detailsId} hidden={!open}>
                <AnswerStats stats={stats} />
            </div>
        </section>
    );
}
