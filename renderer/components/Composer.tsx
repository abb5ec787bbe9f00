import {useEffect, useRef, useState} from "react";
import {useApp} from "../store/index.js";
import type {StrategyChoice} from "../store/types.js";

/** The question box: Enter sends, Shift+Enter adds a line, Escape (or Stop) cancels the streaming answer. */
export function Composer() {
    const [draft, setDraft] = useState("");
    const input = useRef<HTMLTextAreaElement>(null);
    const streaming = useApp((state) => state.activeTurnId !== null);
    const cancelling = useApp((state) => state.turns.find((turn) => turn.id === state.activeTurnId)?.cancelRequested ?? false);
    const online = useApp((state) => state.connection.kind === "open");
    const needsModel = useApp((state) => state.modelsLoaded && state.activeModelId === null);
    const noModels = useApp((state) => state.modelsLoaded && state.models.length === 0);
    const ask = useApp((state) => state.ask);
    const cancel = useApp((state) => state.cancel);
    const strategy = useApp((state) => state.strategy);
    const ratio = useApp((state) => state.ratio);
    const setStrategy = useApp((state) => state.setStrategy);

    const canSend = online && !streaming && !needsModel && draft.trim() !== "";
    const send = () => {
        if (canSend && ask(draft))
            setDraft("");
    };

    // Back to the box when an answer finishes, so the next question can be typed right away.
    useEffect(() => {
        if (!streaming)
            input.current?.focus();
    }, [streaming]);

    let hint = "";
    if (!online)
        hint = "Waiting for the engine…";
    else if (noModels)
        hint = "Add a model to start chatting.";
    else if (needsModel)
        hint = "Choose a model in the header first.";

    return (
        <footer className="composer">
            <div className="composer-settings">
                <label title="How the prompt's KV cache is built: blend strategies reuse each retrieved chunk's cached KV">
                    KV reuse{" "}
                    <select data-testid="strategy-picker" value={strategy}
                        onChange={(event) => setStrategy(event.target.value as StrategyChoice)}>
                        <option value="auto">auto</option>
                        <option value="full">full (no reuse)</option>
                        <option value="prefix">prefix</option>
                        <option value="naive">naive blend</option>
                        <option value="chunk-head">chunk-head</option>
                        <option value="hkvd">hkvd (CacheBlend)</option>
                    </select>
                </label>
                {(strategy === "hkvd" || strategy === "chunk-head") && (
                    <label title="Share of reused chunk tokens to recompute">
                        ratio{" "}
                        <input data-testid="ratio-input" type="number" min={0} max={1} step={0.05} value={ratio}
                            onChange={(event) => setStrategy(strategy, Math.min(1, Math.max(0, Number(event.target.value) || 0)))} />
                    </label>
                )}
            </div>
            <form
                className="composer-form"
                onSubmit={(event) => {
                    event.preventDefault();
                    send();
                }}
            >
                <textarea
                    ref={input}
                    data-testid="question-input"
                    value={draft}
                    rows={1}
                    placeholder={hint === "" ? "Ask a question about your documents…" : hint}
                    aria-label="Question"
                    onChange={(event) => setDraft(event.target.value)}
                    onKeyDown={(event) => {
                        if (event.key === "Enter" && !event.shiftKey && !event.nativeEvent.isComposing) {
                            event.preventDefault();
                            send();
                        }
                    }}
                />
                {streaming ? (
                    <button type="button" className="stop-button" data-testid="stop" onClick={cancel} disabled={cancelling}>
                        {cancelling ? "Stopping…" : "Stop"}
                    </button>
                ) : (
                    <button type="submit" className="primary-button" data-testid="send" disabled={!canSend}>
                        Send
                    </button>
                )}
            </form>
        </footer>
    );
}
