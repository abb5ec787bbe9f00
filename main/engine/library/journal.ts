import {readFile, rm} from "node:fs/promises";
import path from "node:path";
import {writeJsonAtomic} from "../json-file.js";

/**
 * The paths of the batch being committed. If the process dies mid-commit, the next ingest finds the
 * journal and tidies exactly those documents before doing anything else.
 */
export class IngestJournal {
    public constructor(private readonly filePath: string) {}

    public static in(dataDir: string): IngestJournal {
        return new IngestJournal(path.join(dataDir, "library", "ingest-journal.json"));
    }

    public async begin(paths: string[]): Promise<void> {
        await writeJsonAtomic(this.filePath, {paths});
    }

    public async end(): Promise<void> {
        await rm(this.filePath, {force: true});
    }

    public async pending(): Promise<string[]> {
        try {
            const parsed = JSON.parse(await readFile(this.filePath, "utf8")) as {paths?: unknown};
            return Array.isArray(parsed.paths) ? parsed.paths.filter((entry): entry is string => typeof entry === "string") : [];
        } catch {
            return [];
        }
    }
}
