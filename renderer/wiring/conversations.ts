import type {Conversation, StoredTurn} from "../../main/contract/index.js";
import type {ConversationActions, Turn} from "../store/index.js";
import {messageOf, type Wiring, type WiringContext} from "./context.js";

const lastConversationKey = "weft.conversation";

function remember(id: string | null): void {
    try {
        if (id === null)
            localStorage.removeItem(lastConversationKey);
        else
            localStorage.setItem(lastConversationKey, id);
    } catch {
        // Storage can be disabled: a reload then opens the newest conversation.
    }
}

function remembered(): string | null {
    try {
        return localStorage.getItem(lastConversationKey);
    } catch {
        return null;
    }
}

export function toStoredTurn(turn: Turn): StoredTurn | null {
    if (turn.status !== "done" && turn.status !== "cancelled" && turn.status !== "error")
        return null;
    return {
        question: turn.question, answer: turn.answer, status: turn.status, citations: turn.citations, stats: turn.stats,
        error: turn.error, askedAt: new Date().toISOString()
    };
}

export function fromStored(conversation: Conversation): Turn[] {
    return conversation.turns.map((stored, index) => ({
        id: index + 1, question: stored.question, answer: stored.answer, status: stored.status, cancelRequested: false,
        citations: stored.citations, retrievalMs: stored.stats?.retrievalMs ?? null, cacheStats: null, stats: stored.stats, error: stored.error
    }));
}

export type ConversationsWiring = Wiring<ConversationActions> & {
    /** Saves a finished turn into the conversation on screen, creating it with its first answer. */
    saveTurn(turn: Turn): void;
};

/** Conversations kept by the engine: the list, the one on screen (reopened after a reload), and each finished turn. */
export function wireConversations({client, store, notify}: WiringContext): ConversationsWiring {
    // Turns are saved one after another, so a conversation is created once and its turns keep their order.
    let saving: Promise<void> = Promise.resolve();

    const loadConversations = async () => {
        try {
            const conversations = await client.listConversations({});
            store.setState({conversations, conversationsLoaded: true});
        } catch (error) {
            notify(`Could not load the conversations: ${messageOf(error)}`);
        }
    };

    const show = async (id: string) => {
        const conversation = await client.getConversation({id});
        store.setState({conversationId: id, turns: fromStored(conversation), view: "chat"});
        remember(id);
    };

    const openConversation = async (id: string) => {
        try {
            await show(id);
        } catch (error) {
            notify(`Could not open the conversation: ${messageOf(error)}`);
            await loadConversations();
        }
    };

    /** After a reload (or a reconnect) with nothing on screen, the conversation shown last comes back. */
    const restore = async () => {
        await loadConversations();
        const state = store.getState();
        if (state.conversationId !== null || state.turns.length > 0)
            return;
        const last = remembered();
        const wanted = state.conversations.find((conversation) => conversation.id === last) ?? null;
        if (wanted !== null)
            await show(wanted.id).catch(() => remember(null));
    };

    const persist = async (turn: Turn) => {
        const stored = toStoredTurn(turn);
        if (stored === null)
            return;
        let id = store.getState().conversationId;
        if (id === null) {
            id = (await client.createConversation({})).id;
            // The user may have moved on to another chat meanwhile; the turn still belongs to this new one.
            if (store.getState().conversationId === null && store.getState().turns.some((t) => t.id === turn.id)) {
                store.setState({conversationId: id});
                remember(id);
            }
        }
        const summary = await client.appendTurn({id, turn: stored});
        store.setState((state) => ({
            conversations: [summary, ...state.conversations.filter((conversation) => conversation.id !== summary.id)]
        }));
    };

    return {
        onOpen: () => void restore(),
        saveTurn(turn) {
            saving = saving.then(() => persist(turn)).catch((error: unknown) => notify(`Could not save the answer: ${messageOf(error)}`));
        },
        actions: {
            loadConversations,
            openConversation,

            async renameConversation(id, title) {
                try {
                    const summary = await client.renameConversation({id, title});
                    store.setState((state) => ({
                        conversations: state.conversations.map((conversation) => (conversation.id === id ? summary : conversation))
                    }));
                } catch (error) {
                    notify(`Could not rename the conversation: ${messageOf(error)}`);
                }
            },

            async deleteConversation(id) {
                try {
                    await client.deleteConversation({id});
                    if (store.getState().conversationId === id) {
                        store.setState({conversationId: null, turns: []});
                        remember(null);
                    }
                } catch (error) {
                    notify(`Could not delete the conversation: ${messageOf(error)}`);
                }
                await loadConversations();
            }
        }
    };
}
