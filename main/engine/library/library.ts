import {type Citation, EngineError, type FolderInfo, type IngestEvent, type IngestSummary} from "../../contract/index.js";
import {DataDirLock, type LockWait} from "../data-lock.js";
import type {Embedder} from "./embedder.js";
import {ingestFolder} from "./ingest.js";
import {LibraryStore} from "./store.js";

export type Tokenizer = {countTokens: (text: string) => number, kind: "model" | "estimate"};

/** Four characters a token is the usual English average; used only until a model is chosen. */
export const estimateTokenizer: Tokenizer = {countTokens: (text) => Math.ceil(text.length / 4), kind: "estimate"};

/**
 * The engine's document library: folders, ingestion and retrieval over the LanceDB store. Ingestion runs
 * one folder at a time; retrieval never waits for it and reads the last committed state.
 */
export class Library {
    private storePromise: Promise<LibraryStore> | null = null;
    private ingestQueue: Promise<unknown> = Promise.resolve();

    public constructor(
        private readonly dataDir: string,
        private readonly tokenizer: () => Promise<Tokenizer>,
        private readonly embedder: () => Promise<Embedder | null>,
        private readonly folderOptions: () => {followLinksOutside: boolean, lockWait?: LockWait} = () => ({followLinksOutside: false}),
        /** The size chunks are packed to (the setting); the chunker's default when absent. */
        private readonly chunkTokens?: () => number
    ) {}

    /** Chunks may grow a third past the target to end at a sentence or paragraph, as with the chunker's defaults. */
    private chunkSize(): {targetTokens?: number, maxTokens?: number} {
        const target = this.chunkTokens?.();
        return target == null ? {} : {targetTokens: target, maxTokens: Math.ceil(target * 4 / 3)};
    }

    public store(): Promise<LibraryStore> {
        if (this.storePromise == null) {
            const opening = LibraryStore.open(this.dataDir);
            this.storePromise = opening;
            opening.catch(() => {
                if (this.storePromise === opening)
                    this.storePromise = null;
            });
        }
        return this.storePromise;
    }

    public async listFolders(): Promise<FolderInfo[]> {
        const store = await this.store();
        const folders = await store.listFolders();
        return Promise.all(folders.map(async (folder) => {
            const rows = [...(await store.documentsOf(folder.id)).values()];
            const problems = (status: string) => rows.filter((row) => row.status === status)
                .map((row) => ({path: row.path, reason: row.reason})).sort((a, b) => a.path.localeCompare(b.path));
            return {
                id: folder.id,
                path: folder.path,
                addedAt: folder.addedAt,
                lastIndexedAt: folder.lastIndexedAt === "" ? null : folder.lastIndexedAt,
                files: rows.filter((row) => row.status === "indexed").length,
                chunks: await store.countChunks(folder.id),
                skipped: problems("skipped"),
                errors: problems("error")
            };
        }));
    }

    public async removeFolder(id: string): Promise<boolean> {
        return this.exclusive(async () => (await this.store()).removeFolder(id));
    }

    /** Ingests a folder (or only some of its files), streaming progress; folders queue behind each other. */
    public async* ingest(folderPath: string, signal: AbortSignal, onlyPaths?: string[]): AsyncGenerator<IngestEvent> {
        const events: IngestEvent[] = [];
        let wake: (() => void) | null = null;
        const push = (event: IngestEvent) => {
            events.push(event);
            wake?.();
        };

        const run = this.exclusive(async () => {
            const tokenizer = await this.tokenizer();
            const summary = await ingestFolder(await this.store(), folderPath, {
                dataDir: this.dataDir,
                countTokens: tokenizer.countTokens,
                tokenizer: tokenizer.kind,
                ...this.chunkSize(),
                embedder: await this.embedder(),
                signal,
                onlyPaths,
                followLinksOutside: this.folderOptions().followLinksOutside,
                onProgress: (progress) => push({type: "progress", progress})
            });
            const {cancelled, ...rest} = summary;
            push({type: "done", summary: rest satisfies IngestSummary, cancelled});
        }).catch((error: unknown) => {
            push({type: "error", error: error instanceof EngineError ? error.toShape() : {code: "internal", message: (error as Error).message}});
        });

        let finished = false;
        void run.then(() => {
            finished = true;
            wake?.();
        });
        while (true) {
            const event = events.shift();
            if (event != null) {
                yield event;
                if (event.type !== "progress")
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

    public async retrieve(question: string, topK: number): Promise<Citation[]> {
        if (topK === 0)
            return [];

        const store = await this.store();
        const embedder = await this.embedder();
        const hits = embedder != null
            ? await store.searchHybrid(question, (await embedder.embed([question]))[0]!, embedder, topK)
            : await store.searchText(question, topK);
        return hits.map((hit, index) => ({
            n: index + 1,
            path: hit.path,
            page: hit.page,
            span: [hit.spanStart, hit.spanEnd],
            score: hit.score,
            text: hit.text,
            contentHash: hit.contentHash
        }));
    }

    public async close(): Promise<void> {
        await this.ingestQueue.catch(() => {});
        const store = await this.storePromise?.catch(() => null);
        store?.close();
    }

    /** One library write at a time in this process, and only while no other process writes the data folder. */
    private exclusive<T>(task: () => Promise<T>): Promise<T> {
        const locked = () => DataDirLock.for(this.dataDir).hold(task, this.folderOptions().lockWait);
        const result = this.ingestQueue.then(locked, locked);
        this.ingestQueue = result.catch(() => {});
        return result;
    }
}
