import {memo} from "react";
import type {Turn} from "../store/index.js";
import {AnswerStrip} from "./chat/AnswerStrip.js";
import {AnswerText} from "./sources/AnswerText.js";
import {Citations} from "./sources/Citations.js";

/** One question and its answer: the bubble streams tokens, then citations, errors and stats follow. */
export const TurnView = memo(function TurnView({turn}: {turn: Turn}) {
    const finished = turn.status === "done" || turn.status === "cancelled" || turn.status === "error";
    return (
        <article className="turn" data-testid="turn" data-turn={turn.id}>
            <div className="bubble question" data-testid="question">{turn.question}</div>
            <div className="answer-block">
                <div
                    className="bubble answer"
                    data-testid="answer"
                    data-status={turn.status}
                    aria-live="polite"
                    aria-busy={!finished}
                >
                    {finished ? <AnswerText text={turn.answer} citations={turn.citations} /> : turn.answer}
                </div>
                {turn.status === "cancelled" && <p className="answer-note">Stopped.</p>}
                {!finished && turn.cancelRequested && <p className="answer-note">Stopping…</p>}
                {turn.error !== null && turn.status === "error" && (
                    <p className="answer-error" role="alert" data-testid="answer-error" data-code={turn.error.code}>
                        <strong>Error:</strong> {turn.error.message}
                    </p>
                )}
                <Citations citations={turn.citations} />
                {turn.stats !== null && <AnswerStrip stats={turn.stats} />}
            </div>
        </article>
    );
});
