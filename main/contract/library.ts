import {z} from "zod";
import {EngineErrorShape} from "./errors.js";

export const FileProblem = z.object({path: z.string(), reason: z.string()});
export type FileProblem = z.infer<typeof FileProblem>;

export const FolderInfo = z.object({
    id: z.string(),
    path: z.string(),
    addedAt: z.string(),
    lastIndexedAt: z.string().nullable(),
    files: z.number().int().nonnegative(),
    chunks: z.number().int().nonnegative(),
    skipped: z.array(FileProblem),
    errors: z.array(FileProblem)
});
export type FolderInfo = z.infer<typeof FolderInfo>;

/** What `weft ingest --json` prints and an ingest stream's `done` event carries. */
export const IngestSummary = z.object({
    folder: z.string(),
    /** Files indexed and current after this run (new, changed and unchanged). */
    files: z.number().int().nonnegative(),
    /** Chunks in the index for this folder after this run. */
    chunks: z.number().int().nonnegative(),
    changedFiles: z.number().int().nonnegative(),
    removedFiles: z.number().int().nonnegative(),
    skipped: z.array(FileProblem),
    errors: z.array(FileProblem),
    bytes: z.number().int().nonnegative(),
    elapsedMs: z.number().nonnegative(),
    /** "model" when chunks were measured with the active model's tokenizer, else "estimate" (no model yet). */
    tokenizer: z.enum(["model", "estimate"])
});
export type IngestSummary = z.infer<typeof IngestSummary>;

export const IngestProgress = z.object({
    filesDone: z.number().int().nonnegative(),
    filesTotal: z.number().int().nonnegative(),
    chunks: z.number().int().nonnegative(),
    bytes: z.number().int().nonnegative(),
    filesPerSecond: z.number().nonnegative(),
    bytesPerSecond: z.number().nonnegative(),
    currentPath: z.string().nullable()
});
export type IngestProgress = z.infer<typeof IngestProgress>;

export const IngestRequest = z.object({path: z.string().min(1)});

export const IngestEvent = z.discriminatedUnion("type", [
    z.object({type: z.literal("progress"), progress: IngestProgress}),
    z.object({type: z.literal("done"), summary: IngestSummary, cancelled: z.boolean()}),
    z.object({type: z.literal("error"), error: EngineErrorShape})
]);
export type IngestEvent = z.infer<typeof IngestEvent>;
