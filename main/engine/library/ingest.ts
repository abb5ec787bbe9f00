import {stat} from "node:fs/promises";
import path from "node:path";
import {EngineError, type FileProblem, type IngestProgress, type IngestSummary} from "../../contract/index.js";
import {chunkDocument} from "./chunk.js";
import {checkFolder} from "./folder-policy.js";
import {hashFile} from "./file-hash.js";
import {IngestJournal} from "./journal.js";
import {ParserWorker} from "./parse/parser-worker.js";
import type {Embedder} from "./embedder.js";
import type {DocumentRow, LibraryStore, PendingDocument} from "./store.js";
import type {ParseOptions} from "./types.js";
import {walkFolder, type WalkedFile} from "./walk.js";

export type IngestOptions = {
    dataDir: string;
    countTokens: (text: string) => number;
    tokenizer: "model" | "estimate";
    onProgress?: (progress: IngestProgress) => void;
    signal?: AbortSignal;
    /** Documents committed together; bigger batches mean fewer LanceDB fragments. */
    batchSize?: number;
    targetTokens?: number;
    maxTokens?: number;
    parse?: ParseOptions;
    /** When set, chunks get vectors from this embedding model after they are committed. */
    embedder?: Embedder | null;
    /** Only these files (absolute paths) are looked at; the rest of the folder is left as it is (the watcher uses this). */
    onlyPaths?: string[];
    /** Follow symbolic links that lead out of the folder (the setting followLinksOutsideFolder). */
    followLinksOutside?: boolean;
    /** The heap one file's parse may use, in MiB (default 1024). */
    parseHeapMb?: number;
    /** Table versions younger than this survive the upkeep after a changing ingest (default 5 minutes). */
    versionGraceMs?: number;
};

/**
 * Brings a folder's index up to date: new and changed files are parsed, chunked and committed in batches,
 * deleted files are removed, unchanged files (same size and mtime, or same content hash) are left alone.
 * A file that cannot be read keeps whatever was indexed for it before and is listed with the reason.
 */
export async function ingestFolder(store: LibraryStore, folderPath: string, options: IngestOptions): Promise<IngestSummary & {cancelled: boolean}> {
    const parser = new ParserWorker({heapMb: options.parseHeapMb});
    try {
        return await ingestWith(parser, store, folderPath, options);
    } finally {
        await parser.close();
    }
}

async function ingestWith(parser: ParserWorker, store: LibraryStore, folderPath: string, options: IngestOptions): Promise<IngestSummary & {cancelled: boolean}> {
    const startedAt = performance.now();
    const root = await checkFolder(folderPath, {dataDir: options.dataDir});
    try {
        if (!(await stat(root)).isDirectory())
            throw new EngineError("bad_request", `${root} is not a folder`);
    } catch (error) {
        if (error instanceof EngineError)
            throw error;

        throw new EngineError("not_found", `cannot open folder ${root}: ${(error as Error).message}`, {cause: error});
    }

    const journal = IngestJournal.in(options.dataDir);
    const interrupted = await journal.pending();
    if (interrupted.length > 0) {
        await store.tidy(interrupted);
        await journal.end();
    }

    const folder = await store.addFolder(root);
    const existing = await store.documentsOf(folder.id);
    // Chunks stored twice are re-indexed: committing a path replaces every chunk of its hash with one set.
    for (const duplicated of await store.pathsWithDuplicates(folder.id)) {
        const row = existing.get(duplicated);
        if (row != null)
            existing.set(duplicated, {...row, status: "error"});
    }
    const walked = await walkFolder(root, {followLinksOutside: options.followLinksOutside});
    // onlyPaths entries may be folders (a folder created, renamed or deleted): everything under them is in scope.
    const scope = options.onlyPaths?.map((entry) => path.resolve(entry));
    const inScope = (filePath: string) => scope == null || scope.some((entry) => filePath === entry || filePath.startsWith(entry + path.sep));
    const files = walked.files.filter((file) => inScope(file.path));

    const toProcess = files.filter((file) => {
        const row = existing.get(file.path);
        return row == null || row.status === "error" || row.size !== file.size || row.mtimeMs !== file.mtimeMs;
    });

    let filesDone = files.length - toProcess.length;
    let bytes = 0;
    let chunksWritten = 0;
    let changedFiles = 0;
    // LanceDB rejects (and past ~1,000 documents crashes on) the OR-filters of much bigger batches.
    const batchSize = Math.min(options.batchSize ?? 64, 200);
    let lastProgressAt = 0;
    const report = (currentPath: string | null, force = false) => {
        const now = performance.now();
        if (!force && now - lastProgressAt < 100)
            return;

        lastProgressAt = now;
        const seconds = Math.max((now - startedAt) / 1000, 1e-3);
        options.onProgress?.({
            filesDone, filesTotal: files.length, chunks: chunksWritten, bytes,
            filesPerSecond: filesDone / seconds, bytesPerSecond: bytes / seconds, currentPath
        });
    };
    report(null, true);

    const commitPending = async (pending: PendingDocument[]): Promise<void> => {
        if (pending.length > 0) {
            await journal.begin(pending.map(({row}) => row.path));
            await store.commitDocuments(pending);
            await journal.end();
        }
    };

    let cancelled = false;
    for (let start = 0; start < toProcess.length; start += batchSize) {
        if (options.signal?.aborted) {
            cancelled = true;
            break;
        }

        const batch = toProcess.slice(start, start + batchSize);
        const pending: PendingDocument[] = [];
        const rowsOnly: DocumentRow[] = [];
        for (const file of batch) {
            const outcome = await processFile(parser, file, folder.id, existing.get(file.path), options);
            // Stopped mid-file: that file stays as it was; the ones before it are committed below.
            if (options.signal?.aborted) {
                cancelled = true;
                break;
            }

            if (outcome.kind === "commit") {
                pending.push(outcome.pending);
                chunksWritten += outcome.pending.chunks.length;
                changedFiles++;
            } else
                rowsOnly.push(outcome.row);

            filesDone++;
            bytes += file.size;
            report(file.path);
        }

        await store.putDocumentRows(rowsOnly);
        await commitPending(pending);
        if (cancelled)
            break;
    }

    // Links out of the folder: listed as skipped, and whatever was indexed through them before is dropped.
    const linkRows = walked.skipped.filter((problem) => inScope(problem.path)).map((problem): PendingDocument => ({
        row: {...errorRow(problem, folder.id, undefined), status: "skipped", contentHash: `link:${problem.reason}`}, type: null, chunks: []
    }));
    if (!cancelled)
        await commitPending(linkRows.filter(({row}) => existing.get(row.path)?.reason !== row.reason));

    let removedFiles = 0;
    if (!cancelled) {
        // Only a clean listing may delete: a file that merely failed to list keeps its chunks.
        const seen = new Set([...walked.files, ...walked.problems, ...walked.skipped].map((entry) => entry.path));
        const gone = [...existing.keys()].filter((filePath) => !seen.has(filePath) && inScope(filePath));
        await store.removeDocuments(gone);
        removedFiles = gone.length;
        await store.putDocumentRows(walked.problems.filter((problem) => inScope(problem.path))
            .map((problem) => errorRow(problem, folder.id, existing.get(problem.path))));
        if (scope == null)
            await store.markFolderIndexed(folder.id);
    }

    if (!cancelled && options.embedder != null)
        await store.syncVectors(folder.id, options.embedder, (done, total) => {
            if (!options.signal?.aborted)
                report(`embedding ${done}/${total} chunks`, done === total);
        });

    await store.ensureFtsIndex();
    if (changedFiles > 0 || removedFiles > 0)
        await store.upkeep(options.versionGraceMs ?? 5 * 60_000);
    report(null, true);

    const rows = [...(await store.documentsOf(folder.id)).values()];
    const listed = (status: DocumentRow["status"]): FileProblem[] => rows.filter((row) => row.status === status)
        .map((row) => ({path: row.path, reason: row.reason}))
        .sort((a, b) => a.path.localeCompare(b.path));
    return {
        folder: root,
        files: rows.filter((row) => row.status === "indexed").length,
        chunks: await store.countChunks(folder.id),
        changedFiles,
        removedFiles,
        skipped: listed("skipped"),
        errors: listed("error"),
        bytes,
        elapsedMs: performance.now() - startedAt,
        tokenizer: options.tokenizer,
        cancelled
    };
}

type FileOutcome =
    | {kind: "commit", pending: PendingDocument}
    | {kind: "failed", row: DocumentRow}
    /** Same content under a new mtime: only the document row changes. */
    | {kind: "touched", row: DocumentRow};

async function processFile(parser: ParserWorker, file: WalkedFile, folderId: string, previous: DocumentRow | undefined, options: IngestOptions): Promise<FileOutcome> {
    const baseRow = (contentHash: string): DocumentRow => ({
        path: file.path, folderId, contentHash, size: file.size, mtimeMs: file.mtimeMs, type: path.extname(file.path).slice(1).toLowerCase(),
        status: "indexed", reason: "", chunkCount: 0, updatedAt: new Date().toISOString()
    });

    const outcome = await parser.parse(file.path, {...options.parse, signal: options.signal});
    if (outcome.kind === "error")
        return {kind: "failed", row: errorRow({path: file.path, reason: outcome.reason}, folderId, previous)};

    // Skipped files are not read (a 2 GB log is skipped by its size), so size and mtime stand in for a hash.
    let contentHash: string;
    try {
        contentHash = outcome.kind === "skipped" ? `stat:${file.size}:${file.mtimeMs}` : await hashFile(file.path);
    } catch (error) {
        return {kind: "failed", row: errorRow({path: file.path, reason: `could not read: ${(error as Error).message}`}, folderId, previous)};
    }

    if (outcome.kind === "skipped")
        return {kind: "commit", pending: {row: {...baseRow(contentHash), status: "skipped", reason: outcome.reason}, type: null, chunks: []}};

    if (previous != null && previous.status === "indexed" && previous.contentHash === contentHash)
        return {kind: "touched", row: {...previous, size: file.size, mtimeMs: file.mtimeMs, updatedAt: new Date().toISOString()}};

    const chunks = chunkDocument(outcome.doc, {
        countTokens: options.countTokens,
        targetTokens: options.targetTokens,
        maxTokens: options.maxTokens
    });
    return {
        kind: "commit",
        pending: {row: {...baseRow(contentHash), type: outcome.doc.type, chunkCount: chunks.length}, type: outcome.doc.type, chunks}
    };
}

/** A failed file keeps its previous content hash, so the chunks committed for it stay valid and searchable. */
function errorRow(problem: FileProblem, folderId: string, previous: DocumentRow | undefined): DocumentRow {
    return {
        path: problem.path,
        folderId,
        contentHash: previous?.contentHash ?? "",
        size: previous?.size ?? 0,
        mtimeMs: previous?.mtimeMs ?? 0,
        type: previous?.type ?? "",
        status: "error",
        reason: problem.reason,
        chunkCount: previous?.chunkCount ?? 0,
        updatedAt: new Date().toISOString()
    };
}
