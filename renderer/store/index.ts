import {createContext, useContext} from "react";
import {useStore} from "zustand";
import {createStore, type StoreApi} from "zustand/vanilla";
import type {ConnectionSource} from "../transport/connection.js";
import {createCacheWarmSlice} from "./cache-warm-slice.js";
import {createChatSlice} from "./chat-slice.js";
import {createConnectionSlice} from "./connection-slice.js";
import {createLibrarySlice} from "./library-slice.js";
import {createModelsSlice} from "./models-slice.js";
import {createCacheSlice} from "./cache-slice.js";
import {createConversationsSlice} from "./conversations-slice.js";
import {createDocumentSlice} from "./document-slice.js";
import {createDownloadsSlice} from "./downloads-slice.js";
import {createSettingsSlice} from "./settings-slice.js";
import {createViewSlice} from "./view-slice.js";
import type {AppState, EngineActions} from "./types.js";

export type * from "./types.js";
export type AppStore = StoreApi<AppState>;

/**
 * One store made of typed slices. Actions that need the engine go through `engine()`, which the bridge
 * provides once it exists (the bridge needs the store, the store's actions need the bridge).
 */
export function createAppStore(connection: ConnectionSource, engine: () => EngineActions): AppStore {
    return createStore<AppState>()((...a) => ({
        ...createConnectionSlice(connection, engine)(...a),
        ...createModelsSlice(engine)(...a),
        ...createChatSlice(engine)(...a),
        ...createLibrarySlice(engine)(...a),
        ...createCacheWarmSlice(engine)(...a),
        ...createViewSlice()(...a),
        ...createConversationsSlice(engine)(...a),
        ...createSettingsSlice(engine)(...a),
        ...createCacheSlice(engine)(...a),
        ...createDocumentSlice(engine)(...a),
        ...createDownloadsSlice(engine)(...a)
    }));
}

export const StoreContext = createContext<AppStore | null>(null);

/** Selects from the app store; keep selectors returning stored values (or primitives), not new objects. */
export function useApp<T>(selector: (state: AppState) => T): T {
    const store = useContext(StoreContext);
    if (store === null)
        throw new Error("useApp outside <StoreContext.Provider>");
    return useStore(store, selector);
}
