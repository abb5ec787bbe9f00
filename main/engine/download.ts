import {mkdir, stat} from "node:fs/promises";
import path from "node:path";
import {createModelDownloader} from "node-llama-cpp";
import {EngineError} from "../contract/index.js";

export type DownloadProgress = {downloadedBytes: number, totalBytes: number, bytesPerSecond: number};

/**
 * Downloads a model (https URL or `hf:` reference) into `<data>/models` with node-llama-cpp's downloader,
 * which resumes a partial download from its temp file on the next try.
 */
export async function downloadModel(
    uri: string,
    dataDir: string,
    options: {onProgress?: (progress: DownloadProgress) => void, signal?: AbortSignal} = {}
): Promise<string> {
    const dirPath = path.join(dataDir, "models");
    await mkdir(dirPath, {recursive: true});

    await preflight(uri);

    let downloader;
    try {
        downloader = await createModelDownloader({
            modelUri: uri,
            dirPath,
            skipExisting: true,
            deleteTempFileOnCancel: false,
            showCliProgress: false,
            onProgress: (status) => options.onProgress?.({
                downloadedBytes: status.downloadedSize,
                totalBytes: status.totalSize,
                bytesPerSecond: status.averageSpeed
            })
        });
    } catch (error) {
        throw new EngineError("download_failed", `cannot download ${uri}: ${(error as Error).message}`, {cause: error});
    }

    // A stalled connection can keep ipull's cancel waiting indefinitely; finished chunks are already on
    // disk in the temp file, so the caller gets control back at once and a later pull resumes from them.
    let onAbort = () => {};
    const aborted = new Promise<never>((_resolve, reject) => {
        onAbort = () => {
            void downloader.cancel({deleteTempFile: false});
            reject(new Error("aborted"));
        };
    });
    options.signal?.addEventListener("abort", onAbort, {once: true});
    try {
        const filePath = await Promise.race([downloader.download(), aborted]);
        await stat(filePath);
        return filePath;
    } catch (error) {
        if (options.signal?.aborted)
            throw new EngineError("cancelled", "download cancelled; run the same command again to resume", {cause: error});

        throw new EngineError("download_failed", `download of ${uri} failed: ${(error as Error).message}`, {cause: error});
    } finally {
        options.signal?.removeEventListener("abort", onAbort);
    }
}

/**
 * The downloader retries an unreachable host for minutes; a quick HEAD first turns a refused
 * connection or an HTTP error into an immediate, clear message. `hf:` references are resolved
 * by node-llama-cpp itself.
 */
async function preflight(uri: string): Promise<void> {
    if (!/^https?:\/\//i.test(uri))
        return;

    let response: Response;
    try {
        response = await fetch(uri, {method: "HEAD", redirect: "follow", signal: AbortSignal.timeout(20_000)});
    } catch (error) {
        const cause = (error as {cause?: {code?: string, message?: string}}).cause;
        throw new EngineError("download_failed", `cannot reach ${new URL(uri).host}: ${cause?.code ?? cause?.message ?? (error as Error).message}`,
            {cause: error});
    }

    if (response.status >= 400 && response.status !== 405)
        throw new EngineError("download_failed", `cannot download ${uri}: the server answered HTTP ${response.status}`);
}
