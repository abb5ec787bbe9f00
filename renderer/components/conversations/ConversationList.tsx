import {useApp} from "../../store/index.js";
import {ConversationItem} from "./ConversationItem.js";
import {shortcutKey} from "../keys.js";

/** The saved conversations, newest first, with New chat on top. */
export function ConversationList() {
    const conversations = useApp((state) => state.conversations);
    const loaded = useApp((state) => state.conversationsLoaded);
    const newChat = useApp((state) => state.newChat);
    const streaming = useApp((state) => state.activeTurnId !== null);

    return (
        <nav className="conversations" aria-labelledby="conversations-heading">
            <div className="conversations-head">
                <h2 id="conversations-heading">Conversations</h2>
                <button type="button" className="ghost-button small" onClick={newChat} disabled={streaming} title={`New chat (${shortcutKey}+K)`}>
                    New chat
                </button>
            </div>
            {loaded && conversations.length === 0 && <p className="conversations-empty">Your conversations are kept here.</p>}
            <ul aria-label="Saved conversations">
                {conversations.map((conversation) => <ConversationItem key={conversation.id} conversation={conversation} />)}
            </ul>
        </nav>
    );
}
