import path from "node:path";
import {watch, type FSWatcher} from "chokidar";
import {isIgnoredName} from "./walk.js";

export type ChangeBatch = {folder: string, paths: string[]};

/**
 * Watches the library's folders and hands over changed paths in debounced batches per folder, so a save
 * that touches a file three times, or a checkout that changes hundreds, becomes one incremental ingest.
 */
export class FolderWatcher {
    private readonly watchers = new Map<string, FSWatcher>();
    private readonly pending = new Map<string, Set<string>>();
    private timer: NodeJS.Timeout | null = null;

    public constructor(private readonly onChanges: (batch: ChangeBatch) => void, private readonly debounceMs = 400) {}

    public async add(folder: string): Promise<void> {
        if (this.watchers.has(folder))
            return;

        const watcher = watch(folder, {
            ignoreInitial: true,
            followSymlinks: false,
            awaitWriteFinish: {stabilityThreshold: 200, pollInterval: 50},
            ignored: (filePath: string) => filePath !== folder && isIgnoredName(path.basename(filePath))
        });
        this.watchers.set(folder, watcher);
        const note = (filePath: string) => this.note(folder, filePath);
        watcher.on("add", note).on("change", note).on("unlink", note)
            .on("unlinkDir", note).on("addDir", note);
        await new Promise<void>((resolve) => watcher.once("ready", () => resolve()));
    }

    public async remove(folder: string): Promise<void> {
        await this.watchers.get(folder)?.close();
        this.watchers.delete(folder);
        this.pending.delete(folder);
    }

    public async close(): Promise<void> {
        if (this.timer != null)
            clearTimeout(this.timer);

        await Promise.all([...this.watchers.values()].map((watcher) => watcher.close()));
        this.watchers.clear();
    }

    private note(folder: string, filePath: string): void {
        let paths = this.pending.get(folder);
        if (paths == null) {
            paths = new Set();
            this.pending.set(folder, paths);
        }
        paths.add(path.resolve(filePath));

        if (this.timer != null)
            clearTimeout(this.timer);

        this.timer = setTimeout(() => {
            this.timer = null;
            for (const [pendingFolder, changed] of this.pending)
                this.onChanges({folder: pendingFolder, paths: [...changed]});

            this.pending.clear();
        }, this.debounceMs);
    }
}
