import type {DownloadEvent, ModelInfo} from "../contract/index.js";
import {toErrorShape} from "../contract/index.js";
import type {DownloadProgress} from "./download.js";

/** The most progress events a second: the downloader reports every block. */
const progressEveryMs = 200;

type Pull = (source: string, options: {onProgress: (progress: DownloadProgress) => void, signal: AbortSignal}) => Promise<ModelInfo>;

/**
 * A model download as a stream of events: progress (throttled), then the registered model or an error. Aborting the
 * signal keeps the partial file; pulling the same source again resumes it.
 */
export async function* downloadEvents(source: string, signal: AbortSignal, pull: Pull): AsyncGenerator<DownloadEvent> {
    const queue: DownloadEvent[] = [];
    let wake: (() => void) | null = null;
    let lastProgressAt = 0;
    let latest: DownloadProgress | null = null;
    const push = (event: DownloadEvent) => {
        queue.push(event);
        wake?.();
    };

    let finished = false;
    void pull(source, {
        signal,
        onProgress: (progress) => {
            latest = progress;
            const now = performance.now();
            if (now - lastProgressAt >= progressEveryMs) {
                lastProgressAt = now;
                push({type: "progress", progress});
            }
        }
    }).then(
        (model) => {
            if (latest !== null)
                push({type: "progress", progress: {...latest, downloadedBytes: latest.totalBytes || latest.downloadedBytes}});
            push({type: "done", model});
        },
        (error: unknown) => push({type: "error", error: toErrorShape(error)})
    ).finally(() => {
        finished = true;
        wake?.();
    });

    for (;;) {
        const event = queue.shift();
        if (event !== undefined) {
            yield event;
            if (event.type === "done" || event.type === "error")
                return;
            continue;
        }
        if (finished)
            return;
        await new Promise<void>((resolve) => {
            wake = resolve;
        });
        wake = null;
    }
}
