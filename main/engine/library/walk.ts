import type {Dirent} from "node:fs";
import {readdir, realpath, stat} from "node:fs/promises";
import path from "node:path";
import type {FileProblem} from "../../contract/index.js";
import {isWithin} from "./folder-policy.js";

/** Folders that hold tooling, not documents; indexing them only buries real content. */
const ignoredDirectories = new Set([".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".idea", ".vscode",
    ".cache", "dist", "build", "target", ".next", ".weft"]);
const ignoredFiles = new Set(["package-lock.json", "yarn.lock", "pnpm-lock.yaml", "Cargo.lock", "poetry.lock", ".DS_Store", "Thumbs.db"]);

export type WalkedFile = {path: string, size: number, mtimeMs: number};

export function isIgnoredName(name: string): boolean {
    return ignoredFiles.has(name) || ignoredDirectories.has(name) || (name.startsWith(".") && name !== ".");
}

export type WalkOptions = {
    /** Follow symbolic links whose target lies outside the folder (off: they are listed as skipped). */
    followLinksOutside?: boolean;
};

/**
 * Lists the files of a folder, following symlinks once: a directory reached again through a link
 * (a loop, or two links to one place) is reported once as a problem instead of recursing forever.
 * A link that leads out of the folder is not followed unless the options allow it, so adding a folder
 * never indexes what the person did not choose.
 */
export async function walkFolder(root: string, options: WalkOptions = {}): Promise<{files: WalkedFile[], problems: FileProblem[], skipped: FileProblem[]}> {
    const files: WalkedFile[] = [];
    const problems: FileProblem[] = [];
    const skipped: FileProblem[] = [];
    const visited = new Set<string>();
    const realRoot = await realpath(root);

    async function visit(dir: string): Promise<void> {
        let real: string;
        try {
            real = await realpath(dir);
        } catch (error) {
            problems.push({path: dir, reason: describe(error)});
            return;
        }

        if (visited.has(real)) {
            problems.push({path: dir, reason: `symbolic link loop (already indexed as ${real})`});
            return;
        }

        visited.add(real);
        let entries: Dirent[];
        try {
            entries = await readdir(dir, {withFileTypes: true});
        } catch (error) {
            if (dir === root)
                throw error;

            problems.push({path: dir, reason: describe(error)});
            return;
        }

        entries.sort((a, b) => a.name.localeCompare(b.name));
        for (const entry of entries) {
            if (isIgnoredName(entry.name))
                continue;

            const full = path.join(dir, entry.name);
            if (entry.isSymbolicLink() && options.followLinksOutside !== true) {
                const target = await realpath(full).catch(() => null);
                if (target != null && !isWithin(target, realRoot)) {
                    skipped.push({path: full, reason: `symbolic link to ${target}, outside the folder (not followed)`});
                    continue;
                }
            }

            if (entry.isDirectory()) {
                await visit(full);
                continue;
            }

            try {
                const info = await stat(full);
                if (info.isDirectory())
                    await visit(full);
                else if (info.isFile())
                    files.push({path: full, size: info.size, mtimeMs: info.mtimeMs});
            } catch (error) {
                problems.push({path: full, reason: describe(error)});
            }
        }
    }

    await visit(root);
    return {files, problems, skipped};
}

function describe(error: unknown): string {
    const code = (error as NodeJS.ErrnoException).code;
    switch (code) {
        case "ENOENT": return "disappeared while being listed (or a broken symbolic link)";
        case "EACCES": case "EPERM": return "permission denied";
        case "ELOOP": return "symbolic link loop";
        default: return (error as Error).message;
    }
}
