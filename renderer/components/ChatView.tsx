import {useLayoutEffect, useRef} from "react";
import {useApp} from "../store/index.js";
import {shortcutKey} from "./keys.js";
import {NoModels} from "./NoModels.js";
import {TurnView} from "./TurnView.js";

/** The scrolling message list; it follows a streaming answer unless the user has scrolled up to read. */
export function ChatView() {
    const turns = useApp((state) => state.turns);
    const noModels = useApp((state) => state.modelsLoaded && state.models.length === 0);
    const scroller = useRef<HTMLDivElement>(null);
    const stickToBottom = useRef(true);

    useLayoutEffect(() => {
        const element = scroller.current;
        if (element !== null && stickToBottom.current)
            element.scrollTop = element.scrollHeight;
    }, [turns]);

    return (
        <main
            className="chat"
            ref={scroller}
            onScroll={(event) => {
                const element = event.currentTarget;
                stickToBottom.current = element.scrollHeight - element.scrollTop - element.clientHeight < 48;
            }}
        >
            <div className="chat-column" data-testid="messages">
                {noModels && <NoModels />}
                {!noModels && turns.length === 0 && (
                    <div className="empty-chat">
                        <h1>Ask your documents</h1>
                        <p>Answers stream as they are generated, with their sources and timing underneath.</p>
                        <p className="keys">
                            <kbd>Enter</kbd> sends · <kbd>Shift</kbd>+<kbd>Enter</kbd> new line · <kbd>Esc</kbd> stops the answer ·{" "}
                            <kbd>{shortcutKey}</kbd>+<kbd>K</kbd> new chat
                        </p>
                    </div>
                )}
                {turns.map((turn) => <TurnView key={turn.id} turn={turn} />)}
            </div>
        </main>
    );
}
