import {useState} from "react";
import type {ConversationSummary} from "../../../main/contract/index.js";
import {useApp} from "../../store/index.js";
import {formatWhen} from "../format.js";

/** One saved conversation: open it, rename it in place, or delete it (asked once more first). */
export function ConversationItem({conversation}: {conversation: ConversationSummary}) {
    const current = useApp((state) => state.conversationId === conversation.id);
    const renaming = useApp((state) => state.renamingId === conversation.id);
    const busy = useApp((state) => state.activeTurnId !== null);
    const open = useApp((state) => state.openConversation);
    const startRename = useApp((state) => state.startRename);
    const rename = useApp((state) => state.renameConversation);
    const remove = useApp((state) => state.deleteConversation);
    const [confirming, setConfirming] = useState(false);

    if (renaming)
        return (
            <li className="conversation renaming">
                <RenameForm
                    title={conversation.title}
                    onDone={(title) => (title === null ? startRename(null) : rename(conversation.id, title))}
                />
            </li>
        );

    return (
        <li className={`conversation${current ? " current" : ""}`}>
            <button
                type="button"
                className="conversation-open"
                aria-current={current ? "true" : undefined}
                disabled={busy && !current}
                onClick={() => open(conversation.id)}
                title={`${conversation.title}\n${conversation.turnCount} question${conversation.turnCount === 1 ? "" : "s"} · ${formatWhen(conversation.updatedAt)}`}
            >
                {conversation.title}
            </button>
            {confirming ? (
                <span className="conversation-actions" role="group" aria-label={`Delete ${conversation.title}?`}>
                    <button type="button" className="danger-button small" onClick={() => remove(conversation.id)}
                        aria-label={`Confirm deleting ${conversation.title}`}>Delete</button>
                    <button type="button" className="ghost-button small" onClick={() => setConfirming(false)} autoFocus>Keep</button>
                </span>
            ) : (
                <span className="conversation-actions">
                    <button type="button" className="icon-button small" onClick={() => startRename(conversation.id)}
                        aria-label={`Rename ${conversation.title}`} title="Rename">✎</button>
                    <button type="button" className="icon-button small" onClick={() => setConfirming(true)}
                        disabled={busy && current} aria-label={`Delete ${conversation.title}`} title="Delete">×</button>
                </span>
            )}
        </li>
    );
}

function RenameForm({title, onDone}: {title: string; onDone(title: string | null): void}) {
    const [draft, setDraft] = useState(title);
    return (
        <form onSubmit={(event) => {
            event.preventDefault();
            onDone(draft.trim() === "" ? null : draft);
        }}>
            <input
                type="text"
                aria-label="Conversation title"
                value={draft}
                maxLength={200}
                autoFocus
                onChange={(event) => setDraft(event.target.value)}
                onBlur={() => onDone(draft.trim() === "" ? null : draft)}
                onKeyDown={(event) => {
                    if (event.key === "Escape") {
                        event.stopPropagation();
                        onDone(null);
                    }
                }}
            />
        </form>
    );
}
