import type {DownloadEvent, StreamHandle} from "../../main/contract/index.js";
import type {Download, DownloadActions} from "../store/index.js";
import type {Wiring, WiringContext} from "./context.js";

/** Model downloads: progress per source, cancel (the partial file stays), and a new model in the list when one finishes. */
export function wireDownloads({client, store}: WiringContext, onModelAdded: () => Promise<void>): Wiring<DownloadActions> {
    const streams = new Map<string, StreamHandle>();

    const update = (source: string, patch: Partial<Download>) => store.setState((state) => ({
        downloads: state.downloads.map((download) => (download.source === source ? {...download, ...patch} : download))
    }));

    const onEvent = (source: string, event: DownloadEvent) => {
        switch (event.type) {
            case "progress":
                update(source, {progress: event.progress});
                break;
            case "done":
                streams.delete(source);
                update(source, {state: "done", model: event.model});
                void onModelAdded();
                break;
            case "error":
                streams.delete(source);
                update(source, event.error.code === "cancelled"
                    ? {state: "cancelled"}
                    : {state: "error", error: event.error.message});
                break;
        }
    };

    return {
        dispose() {
            for (const stream of streams.values())
                stream.cancel();
        },
        actions: {
            startDownload(source) {
                const previous = store.getState().downloads.find((download) => download.source === source);
                store.setState((state) => ({
                    downloads: [
                        // A resume starts from the progress it had.
                        {source, state: "running", progress: previous?.progress ?? null, error: null, model: null},
                        ...state.downloads.filter((download) => download.source !== source)
                    ]
                }));
                streams.set(source, client.downloadModel({source}, (event) => onEvent(source, event)));
            },
            cancelDownload(source) {
                streams.get(source)?.cancel();
            }
        }
    };
}
