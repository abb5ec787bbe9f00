import {z} from "zod";
import {EngineErrorShape} from "./errors.js";
import {ModelInfo} from "./models.js";

/** An https URL of a .gguf file or a Hugging Face reference (`hf:owner/repo/file.gguf`, `hf:owner/repo:Q4_K_M`). */
export const ModelSource = z.string().trim().min(1).max(2048).refine(
    (source) => /^https?:\/\/\S+$/i.test(source) || /^hf:\S+$/i.test(source),
    "give an http(s) URL or a Hugging Face reference (hf:owner/repo/file.gguf)"
);

export const DownloadProgress = z.object({
    downloadedBytes: z.number().nonnegative(),
    /** 0 while the server has not said. */
    totalBytes: z.number().nonnegative(),
    bytesPerSecond: z.number().nonnegative()
});
export type DownloadProgress = z.infer<typeof DownloadProgress>;

/**
 * Cancelling ends the stream with `error` code `cancelled`; what was downloaded stays on disk, and downloading
 * the same source again resumes from it.
 */
export const DownloadEvent = z.discriminatedUnion("type", [
    z.object({type: z.literal("progress"), progress: DownloadProgress}),
    z.object({type: z.literal("done"), model: ModelInfo}),
    z.object({type: z.literal("error"), error: EngineErrorShape})
]);
export type DownloadEvent = z.infer<typeof DownloadEvent>;

export const downloadStreamEndpoints = {
    downloadModel: {input: z.object({source: ModelSource}), event: DownloadEvent}
} as const;
