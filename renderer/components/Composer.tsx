import {useEffect, useRef, useState} from "react";
import {useApp} from "../store/index.js";

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
