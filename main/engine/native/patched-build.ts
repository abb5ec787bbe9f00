// Finds and loads the llama.cpp build that carries Weft's patches (native/patches/*.diff), made by
// `node scripts/build-llama.mjs --gpu <backend>`. That script records each build in
// node_modules/node-llama-cpp/llama/weft-patches.json: {schema: 1, nodeLlamaCppVersion, builds: {<folder>: {gpu,
// customCmakeOptions, llamaCppRelease, llamaCppCommit, upstreamPatches, patches: [{name, sha256}], builtAt, buildSeconds,
// buildStamp}}}, where <folder> is node-llama-cpp's local build folder under llama/localBuilds/ and buildStamp the
// mtime of its buildDone.status (node-llama-cpp rewrites it on every build, so a rebuild by anything else shows).
//
// How node-llama-cpp 3.22.1 picks the local build (dist/bindings/getLlama.js, loadExistingLlamaBinary): for each GPU
// type to try it first looks for a finished local build in llama/localBuilds/<folder> (llama-addon.node,
// _nlcBuildMetadata.json and buildDone.status present), where <folder> is derived from platform, arch, gpu, the
// llama.cpp release (when not the bundled one) and a hash of the custom CMake options (the `cmakeOptions` option plus
// NODE_LLAMA_CPP_CMAKE_OPTION_* environment variables). Only when there is none does it look at the prebuilt binaries.
// So a local build always wins over the prebuilt one for the same options, also for a plain getLlama({build: "never"}),
// and the engine's startLlama() therefore gets the patched build too once it exists.
// getPatchedLlama() additionally passes the build's recorded `cmakeOptions` (so the folder name matches even when the
// environment of the build is gone, e.g. CMAKE_CUDA_ARCHITECTURES) and `usePrebuiltBinaries: false` with
// `build: "never"`, so a missing local build fails loudly (NoBinaryFoundError) instead of quietly loading the stock
// prebuilt binary, and checks `llama.buildType === "localBuild"`.
//
// Caveat: llama.cpp's shared libraries are loaded per process; load one build per process (a prebuilt Llama created
// first can leave its libllama/libggml mapped for a later local build with the same library names).
import {existsSync, readdirSync, readFileSync, statSync} from "node:fs";
import {createHash} from "node:crypto";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {getLlama, LlamaLogLevel, type Llama} from "node-llama-cpp";

export type PatchedGpu = false | "cuda" | "vulkan" | "metal";

export type PatchedBuildInfo = {
    patched: true;
    /** Weft patch file names in the build, e.g. "0001-allow-scattered-positions-in-batch.diff". */
    patches: string[];
    gpu: PatchedGpu;
    /** node-llama-cpp's local build folder name (under llama/localBuilds/). */
    folderName: string;
    /** Custom CMake options the build was made with; getLlama must get the same to find it. */
    cmakeOptions: Record<string, string>;
    builtAt: string;
};

export type PatchedBuildStatus = PatchedBuildInfo | {patched: false, reason: string};

/** The patch that lets one decode carry scattered positions of a sequence (see its header). */
export const scatteredPositionsPatch = "0001-allow-scattered-positions-in-batch.diff";

type MarkerBuild = {
    gpu: PatchedGpu;
    customCmakeOptions?: Record<string, string>;
    patches: {name: string, sha256: string}[];
    builtAt: string;
    /** mtimeMs of the build's buildDone.status when scripts/build-llama.mjs recorded it. */
    buildStamp?: number;
};

type Marker = {schema: 1, nodeLlamaCppVersion?: string, builds: Record<string, MarkerBuild>};

export const markerFileName = "weft-patches.json";

/** node-llama-cpp's package folder, or undefined when it cannot be resolved. */
export function nodeLlamaCppDir(): string | undefined {
    let dir: string;
    try {
        dir = path.dirname(fileURLToPath(import.meta.resolve("node-llama-cpp")));
    } catch {
        return undefined;
    }
    for (let i = 0; i < 4 && dir !== path.dirname(dir); i++, dir = path.dirname(dir)) {
        const pkg = path.join(dir, "package.json");
        if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, "utf8")) as {name?: string}).name === "node-llama-cpp")
            return dir;
    }
    return undefined;
}

/** The same test node-llama-cpp applies before it loads a local build (compileLLamaCpp.js, getLocalBuildBinaryPath). */
function localBuildExists(nlcDir: string, folderName: string): boolean {
    const folder = path.join(nlcDir, "llama", "localBuilds", folderName);
    return existsSync(path.join(folder, "Release", "llama-addon.node")) &&
        existsSync(path.join(folder, "Release", "_nlcBuildMetadata.json")) &&
        existsSync(path.join(folder, "buildDone.status"));
}

/** native/patches of a source checkout, if this runs from one (not in a packaged app). */
function sourcePatches(): Map<string, string> | undefined {
    let dir = path.dirname(fileURLToPath(import.meta.url));
    for (let i = 0; i < 5 && dir !== path.dirname(dir); i++, dir = path.dirname(dir)) {
        const patchesDir = path.join(dir, "native", "patches");
        if (existsSync(patchesDir) && existsSync(path.join(dir, "package.json"))) {
            const result = new Map<string, string>();
            for (const name of readdirSync(patchesDir).filter((n) => n.endsWith(".diff")).sort())
                result.set(name, createHash("sha256").update(readFileSync(path.join(patchesDir, name))).digest("hex"));
            return result;
        }
    }
    return undefined;
}

/**
 * Whether a patched llama.cpp build is present: the marker written by scripts/build-llama.mjs names it and
 * node-llama-cpp's local build folder for it is complete. With `gpu`, only a build for that backend counts; otherwise
 * the first complete one. When run from a source checkout, a build made from other versions of native/patches/*.diff
 * than the current ones is reported as stale (rebuild).
 */
export function detectPatchedBuild(options: {gpu?: PatchedGpu} = {}): PatchedBuildStatus {
    const nlcDir = nodeLlamaCppDir();
    if (nlcDir === undefined)
        return {patched: false, reason: "node-llama-cpp is not installed"};
    const markerPath = path.join(nlcDir, "llama", markerFileName);
    if (!existsSync(markerPath))
        return {patched: false, reason: `no patched llama.cpp build (${markerPath} is absent; run node scripts/build-llama.mjs)`};
    let marker: Marker;
    try {
        marker = JSON.parse(readFileSync(markerPath, "utf8")) as Marker;
    } catch (error) {
        return {patched: false, reason: `${markerPath} is unreadable: ${(error as Error).message}`};
    }
    if (marker?.schema !== 1 || typeof marker.builds !== "object" || marker.builds === null)
        return {patched: false, reason: `${markerPath} has an unknown format`};

    const wanted = Object.entries(marker.builds).filter(([, build]) => options.gpu === undefined || build.gpu === options.gpu);
    if (wanted.length === 0)
        return {patched: false, reason: `no patched build for gpu=${String(options.gpu)} in ${markerPath}`};
    const present = wanted.filter(([folderName]) => localBuildExists(nlcDir, folderName));
    if (present.length === 0)
        return {patched: false, reason: `the patched build ${wanted.map(([f]) => f).join(", ")} recorded in ${markerPath} ` +
            "is missing from llama/localBuilds (reinstalled node-llama-cpp?); run node scripts/build-llama.mjs"};

    const [folderName, build] = present[0]!;
    const stamp = statSync(path.join(nlcDir, "llama", "localBuilds", folderName, "buildDone.status")).mtimeMs;
    if (build.buildStamp !== stamp)
        return {patched: false, reason: `the local build ${folderName} was rebuilt after scripts/build-llama.mjs recorded it ` +
            `(e.g. by node-llama-cpp itself), so it may lack Weft's patches; run node scripts/build-llama.mjs --gpu ${String(build.gpu)}`};
    const current = sourcePatches();
    if (current !== undefined) {
        const built = new Map(build.patches.map((p) => [p.name, p.sha256]));
        const differs = [...new Set([...current.keys(), ...built.keys()])].filter((name) => current.get(name) !== built.get(name));
        if (differs.length > 0)
            return {patched: false, reason: `the patched build ${folderName} is stale: native/patches changed since it was built ` +
                `(${differs.join(", ")}); run node scripts/build-llama.mjs --gpu ${String(build.gpu)}`};
    }
    return {
        patched: true,
        patches: build.patches.map((p) => p.name),
        gpu: build.gpu,
        folderName,
        cmakeOptions: build.customCmakeOptions ?? {},
        builtAt: build.builtAt
    };
}

/**
 * Loads the patched local build for `gpu` (never builds, never downloads, never falls back to the prebuilt binary).
 * Throws when detectPatchedBuild({gpu}) finds none.
 */
export async function getPatchedLlama(options: {
    gpu: PatchedGpu,
    maxThreads: number,
    logLevel?: LlamaLogLevel,
    logger?: (level: LlamaLogLevel, message: string) => void
}): Promise<Llama> {
    const status = detectPatchedBuild({gpu: options.gpu});
    if (!status.patched)
        throw new Error(`patched llama.cpp build unavailable: ${status.reason}`);
    const llama = await getLlama({
        gpu: options.gpu,
        maxThreads: options.maxThreads,
        build: "never",
        usePrebuiltBinaries: false,
        cmakeOptions: status.cmakeOptions,
        skipDownload: true,
        logLevel: options.logLevel ?? LlamaLogLevel.error,
        ...(options.logger ? {logger: options.logger} : {}),
        progressLogs: false
    });
    if (llama.buildType !== "localBuild" || llama.gpu !== options.gpu) {
        await llama.dispose();
        throw new Error(`node-llama-cpp loaded a ${llama.buildType} build for gpu=${String(llama.gpu)} ` +
            `instead of the patched local build ${status.folderName}`);
    }
    return llama;
}
