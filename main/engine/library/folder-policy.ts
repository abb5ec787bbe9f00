import {realpath} from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {EngineError} from "../../contract/index.js";

/** Folders whose contents are the system's, not the user's documents; they and everything under them are refused. */
// Not /var or /run: macOS keeps temporary folders under /var/folders, and Linux mounts removable media under /run/media.
const systemTrees = ["/proc", "/sys", "/dev", "/etc", "/boot", "/bin", "/sbin", "/lib", "/lib64", "/usr", "/private/etc", "/System",
    "C:\\Windows", "C:\\Program Files", "C:\\Program Files (x86)"];

/** What Weft writes inside its data folder (the index, the chunk KV caches, downloaded models). */
const weftFolders = ["library", "kvcache", "models"];

export type FolderPolicy = {
    /** The engine's data folder: indexing it (or anything in it) would index the index. */
    dataDir: string;
    home?: string;
};

/**
 * The absolute folder an ingest may index, or a clear refusal. `~` means the user's home; any other relative
 * path is refused (a server's working folder means nothing to the person who typed it). The check runs on the
 * real path as well, so `/proc/self` or a link to `/etc` is refused like the folder it leads to.
 */
export async function checkFolder(folderPath: string, policy: FolderPolicy): Promise<string> {
    const home = policy.home ?? os.homedir();
    let absolute: string;
    if (folderPath === "~" || folderPath.startsWith("~/") || folderPath.startsWith("~\\"))
        absolute = path.join(home, folderPath.slice(1));
    else if (path.isAbsolute(folderPath))
        absolute = path.resolve(folderPath);
    else
        throw new EngineError("bad_request", `"${folderPath}" is a relative path: give the folder's absolute path (or ~/...)`);

    const real = await realpath(absolute).catch(() => absolute);
    const dataDir = path.resolve(policy.dataDir);
    const realDataDir = await realpath(dataDir).catch(() => dataDir);
    // The data folder itself and the folders Weft keeps in it; a folder of documents the user keeps there is theirs.
    const owned = [dataDir, realDataDir].flatMap((dir) => weftFolders.map((name) => path.join(dir, name)));
    for (const candidate of new Set([absolute, real])) {
        if (candidate === dataDir || candidate === realDataDir || owned.some((folder) => isWithin(candidate, folder)))
            throw new EngineError("bad_request", `${absolute} is Weft's data folder (or one of its own folders); choose a folder of documents`);

        if (path.dirname(candidate) === candidate || systemTrees.some((tree) => isWithin(candidate, tree)))
            throw new EngineError("bad_request", `${absolute} is a system folder${real !== absolute ? ` (it is ${real})` : ""}; ` +
                "choose a folder of documents");
    }
    return absolute;
}

/** True when `child` is `parent` or lies under it. */
export function isWithin(child: string, parent: string): boolean {
    const relative = path.relative(parent, child);
    return relative === "" || (!relative.startsWith("..") && !path.isAbsolute(relative));
}
