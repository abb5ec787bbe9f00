import type {EngineClient} from "../main/contract/index.js";
import type {AppStore, EngineActions} from "./store/index.js";
import type {ConnectionSource} from "./transport/connection.js";
import {wireCacheWarm} from "./wiring/cache-warm.js";
import {wireCache} from "./wiring/cache.js";
import {wireChat} from "./wiring/chat.js";
import {wireConversations} from "./wiring/conversations.js";
import {wireDocuments} from "./wiring/documents.js";
import {wireDownloads} from "./wiring/downloads.js";
import {wireHost} from "./wiring/host.js";
import {wireSettings} from "./wiring/settings.js";
import type {Wiring, WiringContext} from "./wiring/context.js";
import {wireLibrary} from "./wiring/library.js";
import {wireModels} from "./wiring/models.js";

export type Bridge = EngineActions & {dispose(): void};

/**
 * Joins the slices' wirings (renderer/wiring/, one per slice: the only code that talks to the engine) and runs
 * their start-up when the connection opens. Store actions call these methods; components never touch the client.
 */
export function createBridge(client: EngineClient, store: AppStore, connection: ConnectionSource): Bridge {
    let noticeId = 0;
    const context: WiringContext = {
        client, store, connection,
        notify: (message) => store.setState({notice: {id: ++noticeId, message}})
    };

    const cacheWarm = wireCacheWarm(context);
    const models = wireModels(context, cacheWarm.live);
    const library = wireLibrary(context);
    const conversations = wireConversations(context);
    const settings = wireSettings(context);
    const cache = wireCache(context);
    const documents = wireDocuments(context);
    const downloads = wireDownloads(context, async () => {
        await models.actions.refresh();
        await models.actions.loadHardware();
    });
    const chat = wireChat(context, {
        refreshStatus: models.refreshStatus,
        onTurnFinished: (turn) => {
            conversations.saveTurn(turn);
            if (store.getState().view === "cache")
                void cache.actions.loadCacheOverview();
        }
    });
    const host = wireHost(context, () => {
        for (const wiring of wirings)
            if (wiring !== host)
                wiring.onOpen?.();
    }, () => void models.actions.refresh());
    const wirings: Wiring<object>[] = [models, library, cacheWarm, settings, conversations, chat, cache, documents, downloads, host];

    const onOpen = () => {
        for (const wiring of wirings)
            wiring.onOpen?.();
    };
    const unsubscribe = connection.subscribe((state) => {
        store.setState({connection: state});
        if (state.kind === "open")
            onOpen();
    });
    // IPC is open from the start and never announces it.
    if (connection.get().kind === "open")
        onOpen();

    return {
        ...models.actions,
        ...library.actions,
        ...cacheWarm.actions,
        ...chat.actions,
        ...conversations.actions,
        ...settings.actions,
        ...cache.actions,
        ...documents.actions,
        ...downloads.actions,
        retryConnection: () => connection.retryNow(),
        dispose() {
            unsubscribe();
            for (const wiring of wirings)
                wiring.dispose?.();
        }
    };
}
