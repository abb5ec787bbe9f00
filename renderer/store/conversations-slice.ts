import type {ConversationsSlice, EngineActions, SliceCreator} from "./types.js";

export const createConversationsSlice = (engine: () => EngineActions): SliceCreator<ConversationsSlice> =>
    (set, get) => ({
        conversations: [],
        conversationsLoaded: false,
        conversationId: null,
        renamingId: null,
        newChat: () => {
            if (get().activeTurnId === null)
                set({conversationId: null, turns: [], view: "chat", renamingId: null});
        },
        openConversation: (id) => {
            if (get().activeTurnId !== null)
                return;
            set({view: "chat"});
            if (id !== get().conversationId)
                void engine().openConversation(id);
        },
        startRename: (id) => set({renamingId: id}),
        renameConversation: (id, title) => {
            set({renamingId: null});
            const current = get().conversations.find((conversation) => conversation.id === id);
            if (title.trim() !== "" && current !== undefined && current.title !== title.trim())
                void engine().renameConversation(id, title.trim());
        },
        deleteConversation: (id) => {
            if (get().activeTurnId !== null && get().conversationId === id)
                return;
            void engine().deleteConversation(id);
        }
    });
