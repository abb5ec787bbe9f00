// The kernel's page cache for a benchmark's cold rows: evict one folder's files (not the whole cache: a running app
// keeps its model's pages), and check how much of them is still cached, so a cold row says whether it read the disk.
import {execFileSync} from "node:child_process";
import {readdir, stat} from "node:fs/promises";
import path from "node:path";

async function filesUnder(dir: string): Promise<string[]> {
    const entries = await readdir(dir, {recursive: true, withFileTypes: true}).catch(() => []);
    return entries.filter((entry) => entry.isFile()).map((entry) => path.join(entry.parentPath, entry.name));
}

/**
 * Writes back and evicts every file under `dir` from the page cache (`dd iflag=nocache count=0`: the whole file's
 * pages, through posix_fadvise DONTNEED). Returns null, or why it could not (the files then read from memory).
 */
export async function evictFromPageCache(dir: string): Promise<string | null> {
    try {
        execFileSync("sync");
        for (const file of await filesUnder(dir))
            execFileSync("dd", [`if=${file}`, "iflag=nocache", "count=0", "status=none"]);
        return null;
    } catch (error) {
        return (error as Error).message.split("\n")[0]!;
    }
}

/** Bytes of the files under `dir` and how many of them the page cache holds (util-linux fincore; null where it is missing). */
export async function pageCacheResidency(dir: string): Promise<{fileBytes: number, cachedBytes: number | null}> {
    const files = await filesUnder(dir);
    if (files.length === 0)
        return {fileBytes: 0, cachedBytes: 0};
    let fileBytes = 0, cachedBytes: number | null = 0;
    for (const file of files)
        fileBytes += (await stat(file).catch(() => ({size: 0}))).size;
    try {
        const out = execFileSync("fincore", ["--bytes", "--noheadings", "--raw", "--output", "RES", ...files], {encoding: "utf8"});
        for (const line of out.trim().split("\n"))
            cachedBytes += Number(line.trim()) || 0;
    } catch {
        cachedBytes = null;
    }
    return {fileBytes, cachedBytes};
}

/** The filesystem type of `dir` (tmpfs would mean the "disk" is memory), from stat -f. */
export function filesystemOf(dir: string): string {
    try {
        return execFileSync("stat", ["-f", "-c", "%T", dir], {encoding: "utf8"}).trim();
    } catch {
        return "unknown";
    }
}
