// Builds every runnable piece with esbuild (seconds); type checking is `npm run typecheck`.
import {build} from "esbuild";
import {cp, mkdir, rm} from "node:fs/promises";
import {fileURLToPath} from "node:url";
import path from "node:path";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const dist = path.join(root, "dist");
const at = (...parts) => path.join(root, ...parts);

await rm(dist, {recursive: true, force: true});
await mkdir(path.join(dist, "renderer"), {recursive: true});

const nodeCommon = {
    bundle: true,
    platform: "node",
    target: "node20",
    packages: "external",
    sourcemap: "linked",
    logLevel: "warning"
};

await Promise.all([
    build({...nodeCommon, entryPoints: [at("main/cli/weft.ts")], outfile: at("dist/weft.js"), format: "esm"}),
    build({...nodeCommon, entryPoints: [at("main/electron/main.ts")], outfile: at("dist/electron/main.js"), format: "esm"}),
    // The engine's own process in the desktop app (Electron's utilityProcess).
    build({...nodeCommon, entryPoints: [at("main/electron/engine-host.ts")], outfile: at("dist/electron/engine-host.js"), format: "esm"}),
    // The parse worker's entry sits beside each bundle that starts it (main/engine/library/parse/parser-worker.ts).
    build({...nodeCommon, entryPoints: [at("main/engine/library/parse/parse-worker.ts")], outfile: at("dist/parse-worker.js"), format: "esm"}),
    build({...nodeCommon, entryPoints: [at("main/engine/library/parse/parse-worker.ts")], outfile: at("dist/electron/parse-worker.js"), format: "esm"}),
    // A sandboxed preload cannot require project files, so it is bundled into one CommonJS file (zod included).
    build({
        ...nodeCommon, packages: undefined, external: ["electron"],
        entryPoints: [at("main/electron/preload.ts")], outfile: at("dist/electron/preload.cjs"), format: "cjs"
    }),
    build({
        entryPoints: [at("renderer/main.tsx")],
        outfile: at("dist/renderer/app.js"),
        bundle: true,
        platform: "browser",
        format: "esm",
        target: "chrome120",
        jsx: "automatic",
        minify: true,
        sourcemap: "linked",
        define: {"process.env.NODE_ENV": "\"production\""},
        logLevel: "warning"
    })
]);

await cp(at("renderer/index.html"), at("dist/renderer/index.html"));
await cp(at("renderer/styles.css"), at("dist/renderer/styles.css"));
await cp(at("assets"), at("dist/renderer/assets"), {recursive: true});
// pdf.js for the document viewer, loaded by the renderer only when a PDF is opened (not bundled: it is large).
await mkdir(at("dist/renderer/pdfjs"), {recursive: true});
for (const file of ["pdf.min.mjs", "pdf.worker.min.mjs"])
    await cp(at("node_modules/pdfjs-dist/build", file), at("dist/renderer/pdfjs", file));
