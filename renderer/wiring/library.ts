import type {IngestEvent, StreamHandle} from "../../main/contract/index.js";
import type {Ingest, LibraryActions} from "../store/index.js";
import {messageOf, type Wiring, type WiringContext} from "./context.js";

/** The library: folder list, ingest runs with their progress, removing folders. */
export function wireLibrary({client, store, connection}: WiringContext): Wiring<LibraryActions> {
    let ingestRun = 0;
    let ingestStream: StreamHandle | null = null;
    let folderLoadFailed = false;

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

    return {
        onOpen: () => void loadFolders(),
        dispose: () => ingestStream?.cancel(),
        actions: {
            loadFolders,

            async pickFolder() {
                try {
                    return (await client.pickFolder({})).path;
                } catch (error) {
                    store.setState({libraryError: `Could not open the folder picker: ${messageOf(error)}`});
                    return null;
                }
            },

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
            }
        }
    };
}
