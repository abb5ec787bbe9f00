import {existsSync} from "node:fs";
import {readFile, stat} from "node:fs/promises";
import type {ServerResponse} from "node:http";
import path from "node:path";
import {fileURLToPath} from "node:url";

const contentTypes: Record<string, string> = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon"
};

export const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
    "img-src 'self' data:; connect-src 'self' ws://127.0.0.1:* ws://localhost:*; frame-ancestors 'none'";

/** The built renderer: next to the bundled CLI (dist/renderer), or dist/renderer from the sources. */
export function findRendererDir(): string | null {
    const here = path.dirname(fileURLToPath(import.meta.url));
    const candidates = [path.join(here, "renderer"), path.resolve(here, "..", "..", "dist", "renderer")];
    return candidates.find((dir) => existsSync(path.join(dir, "index.html"))) ?? null;
}

export async function serveStatic(rootDir: string, urlPath: string, response: ServerResponse): Promise<void> {
    let decoded: string;
    try {
        decoded = decodeURIComponent(urlPath);
    } catch {
        response.writeHead(400).end("bad path");
        return;
    }

    const relative = decoded === "/" ? "index.html" : decoded.replace(/^\/+/, "");
    const filePath = path.resolve(rootDir, relative);
    if (filePath !== rootDir && !filePath.startsWith(rootDir + path.sep)) {
        response.writeHead(403).end("forbidden");
        return;
    }

    try {
        const info = await stat(filePath);
        if (!info.isFile())
            throw new Error("not a file");

        const body = await readFile(filePath);
        response.writeHead(200, {
            "Content-Type": contentTypes[path.extname(filePath)] ?? "application/octet-stream",
            "Content-Security-Policy": contentSecurityPolicy,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache"
        });
        response.end(body);
    } catch {
        response.writeHead(404, {"Content-Type": "text/plain; charset=utf-8"}).end("not found");
    }
}
