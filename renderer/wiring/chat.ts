import type {ChatEvent, EngineErrorShape, StreamHandle} from "../../main/contract/index.js";
import type {ChatActions, Turn} from "../store/index.js";
import type {Wiring, WiringContext} from "./context.js";

export type ChatHooks = {
    /** The engine may have loaded a model to answer: keeps the header honest. */
    refreshStatus(): Promise<void>;
    /** A turn reached its end (done, cancelled or failed). */
    onTurnFinished(turn: Turn): void;
};

/** Questions and their streamed answers. */
export function wireChat({client, store}: WiringContext, hooks: ChatHooks): Wiring<ChatActions> {
    let nextTurnId = 1;
    let activeStream: StreamHandle | null = null;

    const updateTurn = (id: number, update: (turn: Turn) => Partial<Turn>) => store.setState((state) => ({
        turns: state.turns.map((turn) => (turn.id === id ? {...turn, ...update(turn)} : turn))
    }));

    const finishTurn = (id: number, patch: Partial<Turn>) => {
        updateTurn(id, () => patch);
        if (store.getState().activeTurnId === id) {
            store.setState({activeTurnId: null});
            activeStream = null;
        }
        const finished = store.getState().turns.find((turn) => turn.id === id);
        if (finished !== undefined)
            hooks.onTurnFinished(finished);
    };

    const onChatEvent = (id: number, event: ChatEvent) => {
        switch (event.type) {
            case "retrieval":
                updateTurn(id, () => ({citations: event.citations, retrievalMs: event.retrievalMs}));
                break;
            case "cacheStats":
                updateTurn(id, () => ({cacheStats: event.stats}));
                break;
            case "token":
                updateTurn(id, (turn) => ({answer: turn.answer + event.text, status: "streaming"}));
                break;
            case "done":
                finishTurn(id, {
                    answer: event.answer,
                    citations: event.citations,
                    stats: event.stats,
                    status: event.cancelled ? "cancelled" : "done"
                });
                void hooks.refreshStatus().catch(() => {});
                break;
            case "error": {
                const error: EngineErrorShape = event.error;
                finishTurn(id, {status: error.code === "cancelled" ? "cancelled" : "error", error});
                break;
            }
        }
    };

    return {
        dispose: () => activeStream?.cancel(),
        actions: {
            ask(question) {
                if (store.getState().activeTurnId !== null)
                    return;
                // Turns loaded from a saved conversation keep their ids: continue above them.
                nextTurnId = Math.max(nextTurnId, ...store.getState().turns.map((turn) => turn.id + 1));
                const id = nextTurnId++;
                const turn: Turn = {
                    id, question, answer: "", status: "waiting", cancelRequested: false,
                    citations: [], retrievalMs: null, cacheStats: null, stats: null, error: null
                };
                store.setState((state) => ({turns: [...state.turns, turn], activeTurnId: id}));
                const {strategy, ratio} = store.getState();
                activeStream = client.chat({question, ...(strategy === "auto" ? {} : {strategy, ratio})}, (event) => onChatEvent(id, event));
            },

            cancel() {
                const id = store.getState().activeTurnId;
                if (id === null || activeStream === null)
                    return;
                updateTurn(id, () => ({cancelRequested: true}));
                activeStream.cancel();
            }
        }
    };
}
