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

    const onAbort = () => void downloader.cancel({deleteTempFile: false});
    options.signal?.addEventListener("abort", onAbort, {once: true});
    try {
        const filePath = await downloader.download();
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
