import type {FolderInfo, IngestEvent} from "../contract/index.js";
import type {LockWait} from "./data-lock.js";
import type {Foreground} from "./foreground.js";
import type {Embedder} from "./library/embedder.js";
import {Library, type Tokenizer} from "./library/library.js";
import {FolderWatcher} from "./library/watcher.js";

/**
 * The document library as the engine serves it: ingests (as foreground work), the folder watcher of long-running hosts,
 * and a signal to cache warming after every change.
 */
export class LibraryHost {
    public readonly library: Library;
    private watcher: FolderWatcher | null = null;
    private readonly maintenance = new AbortController();

    public constructor(dataDir: string, private readonly deps: {
        foreground: Foreground, tokenizer(): Promise<Tokenizer>, embedder(): Promise<Embedder | null>,
        /** Called after an ingest that changed the library (cache warming starts a pass). */
        changed(): void,
        /** The size chunks are packed to (a setting). */
        chunkTokens?(): number,
        /** The folder policy's setting and how long to wait for another process writing the data folder. */
        folderOptions?(): {followLinksOutside: boolean, lockWait?: LockWait}
    }) {
        this.library = new Library(dataDir, () => deps.tokenizer(), () => deps.embedder(), deps.folderOptions, deps.chunkTokens);
    }

    public listFolders(): Promise<FolderInfo[]> {
        return this.library.listFolders();
    }

    /** Stops watching the folder and removes it from the index; returns whether it was there. */
    public async removeFolder(id: string): Promise<boolean> {
        const folder = (await this.library.listFolders()).find((entry) => entry.id === id);
        if (folder != null)
            await this.watcher?.remove(folder.path);
        return this.library.removeFolder(id);
    }

    public async* ingestFolder(folderPath: string, signal: AbortSignal, onlyPaths?: string[]): AsyncGenerator<IngestEvent> {
        const endForeground = this.deps.foreground.begin();
        try {
            for await (const event of this.library.ingest(folderPath, signal, onlyPaths)) {
                if (event.type === "done" && !event.cancelled) {
                    await this.watcher?.add(event.summary.folder);
                    if (event.summary.changedFiles > 0 || event.summary.removedFiles > 0)
                        this.deps.changed();
                }

                yield event;
            }
        } finally {
            endForeground();
        }
    }

    /**
     * For long-running hosts (serve, the app): catches up with changes made while Weft was closed, then
     * keeps every folder's index current as files are created, changed, renamed or deleted.
     */
    public async maintain(log: (line: string) => void): Promise<void> {
        this.watcher ??= new FolderWatcher(({folder, paths}) => {
            void this.drainIngest(folder, paths, log);
        });
        for (const folder of await this.library.listFolders()) {
            await this.drainIngest(folder.path, undefined, log);
            await this.watcher.add(folder.path).catch((error) => log(`cannot watch ${folder.path}: ${(error as Error).message}`));
        }
    }

    private async drainIngest(folder: string, paths: string[] | undefined, log: (line: string) => void): Promise<void> {
        const endForeground = this.deps.foreground.begin();
        try {
            for await (const event of this.library.ingest(folder, this.maintenance.signal, paths)) {
                if (event.type === "error")
                    log(`indexing ${folder} failed: ${event.error.message}`);
                else if (event.type === "done" && (event.summary.changedFiles > 0 || event.summary.removedFiles > 0)) {
                    log(`re-indexed ${folder}: ${event.summary.changedFiles} changed, ${event.summary.removedFiles} removed`);
                    if (!event.cancelled)
                        this.deps.changed();
                }
            }
        } finally {
            endForeground();
        }
    }

    /** Every chunk in the library, its document's path and its text (background warming's work list). */
    public async listChunkTexts(): Promise<Array<{path: string, text: string}>> {
        const store = await this.library.store();
        const chunks: Array<{path: string, text: string}> = [];
        for await (const batch of store.chunkTexts(null))
            for (const chunk of batch)
                chunks.push({path: chunk.path, text: chunk.text});

        return chunks;
    }

    /** Stops maintenance (ingests in flight end at their next file) and the watcher. */
    public async stop(): Promise<void> {
        this.maintenance.abort();
        await this.watcher?.close();
    }

    public close(): Promise<void> {
        return this.library.close();
    }
}
