import {
    EngineError, type CacheWarmEvent, type CacheWarmStatus, type ChatEvent, type EngineClient, type EngineErrorShape, type EngineStatus,
    type IngestEvent, type StreamHandle
} from "../main/contract/index.js";
import type {AppStore, EngineActions, Ingest, Turn} from "./store/index.js";
import type {ConnectionSource} from "./transport/connection.js";

export type Bridge = EngineActions & {dispose(): void};

function messageOf(error: unknown): string {
    if (error instanceof EngineError || error instanceof Error)
        return error.message;
    return String(error);
}

/**
 * The one place where engine results and events become store updates. Store actions call these methods;
 * components never touch the client.
 */
export function createBridge(client: EngineClient, store: AppStore, connection: ConnectionSource): Bridge {
    let noticeId = 0;
    let nextTurnId = 1;
    let activeStream: StreamHandle | null = null;
    let ingestRun = 0;
    let ingestStream: StreamHandle | null = null;
    let folderLoadFailed = false;
    let warmStream: StreamHandle | null = null;

    const notify = (message: string) => store.setState({notice: {id: ++noticeId, message}});

    const updateTurn = (id: number, update: (turn: Turn) => Partial<Turn>) => store.setState((state) => ({
        turns: state.turns.map((turn) => (turn.id === id ? {...turn, ...update(turn)} : turn))
    }));

    /** The warming status inside a getStatus reply; the event stream, when it runs, is newer. */
    const warmFrom = (status: EngineStatus) => (warmStream === null ? {cacheWarm: status.cacheWarm} : {});

    const refreshStatus = async () => {
        const status = await client.getStatus({});
        store.setState({status, activeModelId: status.activeModelId, ...warmFrom(status)});
    };

    const refresh = async () => {
        try {
            const [status, models] = await Promise.all([client.getStatus({}), client.listModels({})]);
            store.setState({status, models, modelsLoaded: true, activeModelId: status.activeModelId, ...warmFrom(status)});
        } catch (error) {
            // A lost connection is already on screen; anything else deserves a banner.
            if (connection.get().kind === "open")
                notify(`Could not load the engine status: ${messageOf(error)}`);
        }
    };

    const finishTurn = (id: number, patch: Partial<Turn>) => {
        updateTurn(id, () => patch);
        if (store.getState().activeTurnId === id) {
            store.setState({activeTurnId: null});
            activeStream = null;
        }
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
                // The engine may have loaded a model to answer: keep the header honest.
                void refreshStatus().catch(() => {});
                break;
            case "error": {
                const error: EngineErrorShape = event.error;
                finishTurn(id, {status: error.code === "cancelled" ? "cancelled" : "error", error});
                break;
            }
        }
    };

    const loadFolders = async () => {
        try {
            const folders = await client.listFolders({});
            store.setState({folders, foldersLoaded: true});
            if (folderLoadFailed) {
                folderLoadFailed = false;
                store.setState({libraryError: null});
            }
        } catch (error) {
            // Shown in the library panel, not as a banner: chatting still works without the list.
            if (connection.get().kind === "open") {
                folderLoadFailed = true;
                store.setState({libraryError: `Could not load the library: ${messageOf(error)}`});
            }
        }
    };

    /** Updates the ingest of run `run`; a late event of an earlier run changes nothing. */
    const updateIngest = (run: number, patch: Partial<Ingest>) => {
        if (run !== ingestRun)
            return;
        store.setState((state) => (state.ingest === null ? {} : {ingest: {...state.ingest, ...patch}}));
    };

    const onIngestEvent = (run: number, event: IngestEvent) => {
        switch (event.type) {
            case "progress": {
                const first = run === ingestRun && store.getState().ingest?.progress === null;
                updateIngest(run, {progress: event.progress});
                // The engine adds the folder before it reads a file: list it (as "indexing…") right away.
                if (first)
                    void loadFolders();
                break;
            }
            case "done":
                if (run === ingestRun)
                    ingestStream = null;
                // "done" on screen means the folder list below already shows the result.
                void loadFolders().then(() => updateIngest(run, {
                    state: event.cancelled ? "cancelled" : "done",
                    summary: event.summary
                }));
                break;
            case "error":
                if (run === ingestRun)
                    ingestStream = null;
                // A folder can be added before its indexing fails: list it either way.
                void loadFolders().then(() => updateIngest(run, event.error.code === "cancelled"
                    ? {state: "cancelled"}
                    : {state: "error", error: event.error}));
                break;
        }
    };

    /** Follows background cache warming; a lost connection ends the stream, and the next open starts another. */
    const watchCacheWarm = () => {
        warmStream?.cancel();
        const stream: StreamHandle = client.watchCacheWarm({}, (event: CacheWarmEvent) => {
            if (event.type === "status")
                store.setState({cacheWarm: event.status});
            else if (warmStream === stream)
                warmStream = null;
        });
        warmStream = stream;
    };

    const setWarmState = async (call: () => Promise<CacheWarmStatus>, what: string) => {
        store.setState({cacheWarmBusy: true});
        try {
            store.setState({cacheWarm: await call()});
        } catch (error) {
            notify(`Could not ${what} preparing the KV caches: ${messageOf(error)}`);
        } finally {
            store.setState({cacheWarmBusy: false});
        }
    };

    const onOpen = () => {
        void refresh();
        void loadFolders();
        watchCacheWarm();
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
        refresh,

        async selectModel(id) {
            const previous = store.getState().activeModelId;
            store.setState({activeModelId: id, modelBusy: true});
            try {
                const model = await client.selectModel({id});
                store.setState((state) => ({
                    activeModelId: model.id,
                    models: state.models.map((m) => (m.id === model.id ? {...m, ...model} : m))
                }));
                await refreshStatus();
            } catch (error) {
                store.setState({activeModelId: previous});
                notify(`Could not select the model: ${messageOf(error)}`);
            } finally {
                store.setState({modelBusy: false});
            }
        },

        async addModel(path) {
            if (path === "")
                return false;
            store.setState({modelBusy: true});
            try {
                const model = await client.addModel({path});
                // The list says whether each model can blend, which adding does not.
                store.setState({models: await client.listModels({})});
                if (store.getState().activeModelId === null)
                    await client.selectModel({id: model.id}).then(() => refreshStatus());
                return true;
            } catch (error) {
                notify(`Could not add the model: ${messageOf(error)}`);
                return false;
            } finally {
                store.setState({modelBusy: false});
            }
        },

        ask(question) {
            if (store.getState().activeTurnId !== null)
                return;
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
        },

        retryConnection: () => connection.retryNow(),

        loadFolders,

        ingestFolder(path) {
            if (ingestStream !== null || store.getState().ingest?.state === "running")
                return false;
            const run = ++ingestRun;
            store.setState({
                ingest: {run, path, state: "running", progress: null, summary: null, error: null, cancelRequested: false},
                libraryError: null
            });
            ingestStream = client.ingestFolder({path}, (event) => onIngestEvent(run, event));
            return true;
        },

        cancelIngest() {
            if (ingestStream === null)
                return;
            updateIngest(ingestRun, {cancelRequested: true});
            ingestStream.cancel();
        },

        async removeFolder(id) {
            store.setState({removingId: id, libraryError: null});
            try {
                const {removed} = await client.removeFolder({id});
                if (removed)
                    store.setState((state) => ({folders: state.folders.filter((folder) => folder.id !== id)}));
                else
                    store.setState({libraryError: "That folder was no longer in the library."});
            } catch (error) {
                store.setState({libraryError: `Could not remove the folder: ${messageOf(error)}`});
            } finally {
                store.setState({removingId: null});
            }
            await loadFolders();
        },

        pauseCacheWarm: () => setWarmState(() => client.pauseCacheWarm({}), "pause"),

        resumeCacheWarm: () => setWarmState(() => client.resumeCacheWarm({}), "resume"),

        dispose() {
            unsubscribe();
            activeStream?.cancel();
            ingestStream?.cancel();
            warmStream?.cancel();
        }
    };
}
