import type {ChatSlice, EngineActions, SliceCreator} from "./types.js";

export const createChatSlice = (engine: () => EngineActions): SliceCreator<ChatSlice> =>
    (set, get) => ({
        turns: [],
        strategy: "auto",
        ratio: 0.15,
        setStrategy: (strategy, ratio) => {
            set((state) => ({strategy, ratio: ratio ?? state.ratio}));
            // Kept in the engine's settings, so the next start (and the Settings view) has the same choice.
            void engine().changeSettings({strategy, ratio: get().ratio});
        },
        activeTurnId: null,
        ask: (question) => {
            if (question.trim() === "" || get().activeTurnId !== null)
                return false;
            engine().ask(question.trim());
            return true;
        },
        cancel: () => {
            if (get().activeTurnId !== null)
                engine().cancel();
        },
        clearChat: () => get().newChat()
    });
