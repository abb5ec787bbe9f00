import {readFile, realpath, stat} from "node:fs/promises";
import path from "node:path";
import {EngineError, maxDocumentBytes, type OpenedDocument} from "../contract/index.js";
import {parseDocument} from "./library/parse/index.js";
import {detectType} from "./library/parse/detect.js";

/** True when `child` is `parent` or lies below it (both already resolved). */
function isInside(parent: string, child: string): boolean {
    const relative = path.relative(parent, child);
    return relative === "" || (!relative.startsWith("..") && !path.isAbsolute(relative));
}

/**
 * Reads a document for the in-app viewer, only if it lies inside one of the library's folders once every link is
 * resolved: a page cannot use this to read ~/.ssh or a file a symlink inside a folder points out to.
 * Anything outside (or missing) is `not_found`, so the answer does not tell which files exist elsewhere.
 */
export async function openLibraryDocument(requested: string, folders: string[]): Promise<OpenedDocument> {
    const real = await resolveLibraryDocument(requested, folders);
    const info = await stat(real);
    if (info.size > maxDocumentBytes)
        throw new EngineError("bad_request", `${path.basename(real)} is ${Math.round(info.size / 1024 ** 2)} MiB, too large to show in the app`);

    const detected = detectType(real);
    if (detected.kind === "known" && detected.type === "pdf") {
        const bytes = await readFile(real);
        return {kind: "pdf", path: requested, base64: bytes.toString("base64"), byteLength: bytes.byteLength};
    }

    // The same parser as ingest, so a citation's span marks the same characters here.
    const outcome = await parseDocument(real);
    if (outcome.kind !== "parsed")
        throw new EngineError("bad_request", `cannot show ${path.basename(real)}: ${outcome.reason}`);
    return {kind: "text", path: requested, type: outcome.doc.type, text: outcome.doc.text};
}

/** The real path of a file inside one of the library's folders; anything else is `not_found`. */
export async function resolveLibraryDocument(requested: string, folders: string[]): Promise<string> {
    const notFound = () => new EngineError("not_found", `${requested} is not a document in the library`);
    if (!path.isAbsolute(requested))
        throw notFound();

    let real: string;
    try {
        real = await realpath(requested);
    } catch {
        throw notFound();
    }
    const roots = await Promise.all(folders.map((folder) => realpath(folder).catch(() => null)));
    if (!roots.some((root) => root !== null && isInside(root, real)))
        throw notFound();

    const info = await stat(real);
    if (!info.isFile())
        throw notFound();
    return real;
}
