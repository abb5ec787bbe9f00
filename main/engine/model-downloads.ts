import type {DownloadEvent, ModelInfo} from "../contract/index.js";
import {toErrorShape} from "../contract/index.js";
import {AsyncQueue} from "./async-queue.js";
import type {DownloadProgress} from "./download.js";

/** The most progress events a second: the downloader reports every block. */
const progressEveryMs = 200;

type Pull = (source: string, options: {onProgress: (progress: DownloadProgress) => void, signal: AbortSignal}) => Promise<ModelInfo>;

/**
 * A model download as a stream of events: progress (throttled), then the registered model or an error. Aborting the
 * signal keeps the partial file; pulling the same source again resumes it.
 */
export async function* downloadEvents(source: string, signal: AbortSignal, pull: Pull): AsyncGenerator<DownloadEvent> {
    const queue = new AsyncQueue<DownloadEvent>();
    let lastProgressAt = 0;
    let latest: DownloadProgress | null = null;
    void pull(source, {
        signal,
        onProgress: (progress) => {
            latest = progress;
            const now = performance.now();
            if (now - lastProgressAt >= progressEveryMs) {
                lastProgressAt = now;
                queue.push({type: "progress", progress});
            }
        }
    }).then(
        (model) => {
            if (latest !== null)
                queue.push({type: "progress", progress: {...latest, downloadedBytes: latest.totalBytes || latest.downloadedBytes}});
            queue.push({type: "done", model});
        },
        (error: unknown) => queue.push({type: "error", error: toErrorShape(error)})
    );
    yield* queue.drain((event) => event.type === "done" || event.type === "error");
}
