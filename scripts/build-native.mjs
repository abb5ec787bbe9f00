// Builds Weft's small N-API addon (native/ -> native/build/Release/weft_native.node) with node-gyp against the
// installed Node headers; no download, seconds. The addon links no llama.cpp: it resolves llama_* / ggml_* at run
// time from the library node-llama-cpp already loaded, and needs only llama.cpp's headers, which it takes from
// node-llama-cpp's bundled source (cloned, never built, into node_modules/node-llama-cpp/llama/llama.cpp when absent).
//
// Exits 0 with a clear message when the build fails (the engine then falls back to full prefill);
// `--strict` makes a failure exit 1. Skips the build when the addon is newer than its sources; `--force` rebuilds.
// `--debug` builds the debug target (diagnostics such as the SIGUSR2 stack dumper; scripts/gpu-run.sh uses it).
import {spawnSync} from "node:child_process";
import {existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync} from "node:fs";
import {createRequire} from "node:module";
import path from "node:path";
import {fileURLToPath} from "node:url";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const nativeDir = path.join(root, "native");
const output = path.join(nativeDir, "build", "Release", "weft_native.node");
const args = process.argv.slice(2);
const strict = args.includes("--strict");
const debug = args.includes("--debug");
const flavorFile = path.join(nativeDir, "build", "weft-flavor.txt");
const flavor = debug ? "debug" : "release";
// A debug addon is never taken for an up-to-date product one, nor the other way round.
const force = args.includes("--force") || (existsSync(flavorFile) ? readFileSync(flavorFile, "utf8").trim() : "release") !== flavor;
const require = createRequire(path.join(root, "package.json"));

function fail(reason) {
    console.error(`build-native: the native addon was NOT built: ${reason}`);
    console.error("build-native: Weft still works without it (the blend engine falls back to full prefill).");
    process.exit(strict ? 1 : 0);
}

function nodeLlamaCppDir() {
    // node-llama-cpp's "exports" hides package.json; its entry is <dir>/dist/index.js.
    return path.resolve(path.dirname(require.resolve("node-llama-cpp")), "..");
}

/** Makes sure llama.cpp's headers exist, cloning node-llama-cpp's bundled source (same tag as its binaries). */
function ensureLlamaHeaders(nlcDir) {
    const llamaDir = path.join(nlcDir, "llama", "llama.cpp");
    const header = path.join(llamaDir, "include", "llama.h");
    if (existsSync(header))
        return;

    const bundle = path.join(nlcDir, "llama", "gitRelease.bundle");
    if (!existsSync(bundle))
        fail(`llama.cpp headers are missing and ${bundle} does not exist`);
    if (existsSync(llamaDir) && readdirSync(llamaDir).length > 0)
        fail(`${llamaDir} exists but has no include/llama.h (a clone in progress or a broken one?); remove it and retry`);

    // Clone next to the target and rename, so a concurrent clone (scripts/build-llama.mjs) never sees half a tree.
    const temp = mkdtempSync(path.join(nlcDir, "llama", ".llama.cpp-clone-"));
    try {
        const clone = spawnSync("git", ["-c", "advice.detachedHead=false", "clone", "-q", bundle, path.join(temp, "llama.cpp")],
            {stdio: ["ignore", "inherit", "inherit"]});
        if (clone.error != null || clone.status !== 0)
            fail(`git clone of ${bundle} failed (${clone.error?.message ?? `exit ${clone.status}`})`);
        try {
            if (existsSync(llamaDir))
                rmSync(llamaDir, {recursive: true}); // empty directory (checked above)
            renameSync(path.join(temp, "llama.cpp"), llamaDir);
            console.log(`build-native: cloned llama.cpp source (headers only are used) into ${path.relative(root, llamaDir)}`);
        } catch (error) {
            if (!existsSync(header))
                fail(`could not move the llama.cpp clone into ${llamaDir}: ${error.message}`);
            // Someone else's clone landed first: use it.
        }
    } finally {
        rmSync(temp, {recursive: true, force: true});
    }
}

function newestMtime(files) {
    let newest = 0;
    for (const file of files) {
        if (!existsSync(file))
            continue;
        const stat = statSync(file);
        if (stat.isDirectory())
            newest = Math.max(newest, newestMtime(readdirSync(file).map((entry) => path.join(file, entry))));
        else
            newest = Math.max(newest, stat.mtimeMs);
    }
    return newest;
}

function nodeDir() {
    const npm = process.platform === "win32" ? "npm.cmd" : "npm";
    const result = spawnSync(npm, ["config", "get", "nodedir"], {encoding: "utf8", shell: process.platform === "win32"});
    const value = result.status === 0 ? result.stdout.trim() : "";
    if (value !== "" && value !== "undefined" && value !== "null")
        return value;
    // Headers shipped with this Node (e.g. /usr/include/node): node-gyp wants the prefix above include/node.
    const prefix = path.resolve(path.dirname(process.execPath), "..");
    return existsSync(path.join(prefix, "include", "node", "node_api.h")) ? prefix : null;
}

let nlcDir;
try {
    nlcDir = nodeLlamaCppDir();
} catch (error) {
    fail(`node-llama-cpp is not installed (${error.message})`);
}
ensureLlamaHeaders(nlcDir);

const inputs = [
    path.join(nativeDir, "binding.gyp"),
    path.join(nativeDir, "src"),
    path.join(nlcDir, "llama", "addon"),
    path.join(nlcDir, "llama", "llama.cpp", "include", "llama.h"),
    path.join(nlcDir, "llama", "llama.cpp", "ggml", "include"),
    fileURLToPath(import.meta.url)
];
if (!force && existsSync(output) && statSync(output).mtimeMs > newestMtime(inputs)) {
    console.log(`build-native: ${path.relative(root, output)} is up to date`);
    process.exit(0);
}

let nodeGyp;
try {
    nodeGyp = require.resolve("node-gyp/bin/node-gyp.js");
} catch {
    fail("node-gyp is not installed (expected node_modules/node-gyp)");
}

const dir = nodeDir();
const gypArgs = [nodeGyp, "rebuild", "--jobs", "max", "--release"];
if (dir != null)
    gypArgs.push(`--nodedir=${dir}`);
if (debug)
    gypArgs.push("--weft_debug=1");

// node-gyp's build folder is output only: keep it out of git whatever the repo's .gitignore says.
function ignoreBuildFolder() {
    const buildDir = path.join(nativeDir, "build");
    mkdirSync(buildDir, {recursive: true});
    writeFileSync(path.join(buildDir, ".gitignore"), "*\n");
}

const started = Date.now();
console.log(`build-native: node-gyp rebuild in native/${dir == null ? "" : ` (nodedir ${dir})`}`);
const result = spawnSync(process.execPath, gypArgs, {cwd: nativeDir, stdio: "inherit", env: {...process.env, npm_config_loglevel: "warn"}});
if (existsSync(path.join(nativeDir, "build")))
    ignoreBuildFolder();
if (result.error != null || result.status !== 0)
    fail(`node-gyp rebuild failed (${result.error?.message ?? `exit ${result.status ?? result.signal}`}); see the compiler output above`);
if (!existsSync(output))
    fail(`node-gyp finished but ${output} is missing`);

writeFileSync(flavorFile, `${flavor}\n`);
console.log(`build-native: built ${path.relative(root, output)}${debug ? " (debug target)" : ""} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
