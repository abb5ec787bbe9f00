// Builds node-llama-cpp's bundled llama.cpp from source with Weft's patches (native/patches/*.diff), for one backend.
//
//   node scripts/build-llama.mjs [--gpu false|cuda|vulkan|metal] [--force]
//   node scripts/build-llama.mjs --check [--source <git bundle or llama.cpp checkout>]
//
// Build: makes sure node_modules/node-llama-cpp/llama/llama.cpp holds the bundled source (cloned from
// llama/gitRelease.bundle, no network; an existing checkout of the same commit is accepted), applies node-llama-cpp's
// own llama/patches/*.diff (its `source download` does that after cloning, its `source build` does not) and then
// Weft's patches, skipping those already applied, runs `node-llama-cpp source build --gpu <gpu> --noUsageExample`
// (NODE_LLAMA_CPP_CMAKE_OPTION_* environment variables pass through, e.g. CMAKE_CUDA_ARCHITECTURES=90), and records
// the build in node_modules/node-llama-cpp/llama/weft-patches.json, which main/engine/native/patched-build.ts reads.
// A build whose record matches (same gpu, CMake options, source commit and patch hashes) is not redone without --force.
// About 6 minutes for the CPU backend on 2 cores.
//
// --check: for each Weft patch, says whether the unpatched source (by default the bundle node-llama-cpp ships; after a
// node-llama-cpp upgrade that is the new llama.cpp) still contains the code it changes. Always exits 0.
import {execFileSync, spawn} from "node:child_process";
import {createHash} from "node:crypto";
import {existsSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync} from "node:fs";
import os from "node:os";
import path from "node:path";
import {performance} from "node:perf_hooks";
import {fileURLToPath} from "node:url";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const weftPatchesDir = path.join(root, "native", "patches");
const markerName = "weft-patches.json";
const started = performance.now();

class BuildError extends Error {}

function usage() {
    return "usage: node scripts/build-llama.mjs [--gpu false|cuda|vulkan|metal] [--force]\n" +
        "       node scripts/build-llama.mjs --check [--source <git bundle or llama.cpp checkout>]";
}

function parseArgs(argv) {
    const args = {gpu: undefined, check: false, force: false, source: undefined};
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i];
        const [name, inline] = arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
        const value = () => {
            const v = inline ?? argv[++i];
            if (v === undefined)
                throw new BuildError(`${name} needs a value\n${usage()}`);
            return v;
        };
        if (name === "--gpu")
            args.gpu = value();
        else if (name === "--check")
            args.check = true;
        else if (name === "--force")
            args.force = true;
        else if (name === "--source")
            args.source = path.resolve(value());
        else if (name === "--help" || name === "-h") {
            console.log(usage());
            process.exit(0);
        } else
            throw new BuildError(`unknown argument ${arg}\n${usage()}`);
    }
    const gpus = ["false", "cuda", "vulkan", "metal"];
    // Default: what node-llama-cpp's prebuilt binaries use where the patched build replaces them.
    args.gpu ??= process.platform === "darwin" && process.arch === "arm64" ? "metal" : "false";
    if (!gpus.includes(args.gpu))
        throw new BuildError(`--gpu must be one of ${gpus.join(", ")} (got ${args.gpu})`);
    return args;
}

function findNodeLlamaCpp() {
    let dir = path.dirname(fileURLToPath(import.meta.resolve("node-llama-cpp")));
    for (let i = 0; i < 4 && dir !== path.dirname(dir); i++, dir = path.dirname(dir)) {
        const pkgPath = path.join(dir, "package.json");
        if (existsSync(pkgPath)) {
            const pkg = JSON.parse(readFileSync(pkgPath, "utf8"));
            if (pkg.name === "node-llama-cpp")
                return {dir, version: pkg.version};
        }
    }
    throw new BuildError("node-llama-cpp is not installed (run npm ci)");
}

function git(args, cwd, {quiet = false} = {}) {
    try {
        return execFileSync("git", args, {cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 << 20});
    } catch (error) {
        if (error.code === "ENOENT")
            throw new BuildError("git is needed and is not on PATH");
        if (quiet)
            return null;
        throw new BuildError(`git ${args.join(" ")} (in ${cwd}) failed: ${(error.stderr || error.message).trim()}`);
    }
}

/** Whether `git apply [--reverse] --check` accepts the patch in `repo`. */
function applies(repo, patchFile, {reverse = false} = {}) {
    return git(["apply", "--check", "--ignore-whitespace", ...(reverse ? ["--reverse"] : []), patchFile], repo, {quiet: true}) !== null;
}

function listDiffs(dir) {
    if (!existsSync(dir))
        return [];
    return readdirSync(dir).filter((name) => name.endsWith(".diff")).sort().map((name) => path.join(dir, name));
}

function sha256(file) {
    return createHash("sha256").update(readFileSync(file)).digest("hex");
}

function bundleHead(bundle) {
    const heads = git(["bundle", "list-heads", bundle], root).trim().split("\n").map((line) => line.split(" "));
    const head = heads.find(([, ref]) => ref === "HEAD") ?? heads[0];
    if (!head?.[0]?.match(/^[0-9a-f]{40}$/))
        throw new BuildError(`${bundle}: no HEAD in the bundle`);
    return head[0];
}

function skippedUpstreamPatches() {
    return new Set((process.env.NODE_LLAMA_CPP_REPO_SKIP_PATCHES ?? "").split(";").filter(Boolean));
}

/**
 * Applies patches in order, skipping those already applied. Upstream (node-llama-cpp's) patches that neither apply nor
 * are applied only warn, as node-llama-cpp itself does (it may have judged them unneeded); Weft's must apply.
 */
function applyPatches(repo, patchFiles, {kind, required}) {
    const skip = kind === "node-llama-cpp" ? skippedUpstreamPatches() : new Set();
    if (skip.has("*"))
        return [];
    const applied = [];
    for (const file of patchFiles) {
        const name = path.basename(file);
        if (skip.has(name) || skip.has(name.replace(/\.diff$/, "")))
            continue;
        if (applies(repo, file, {reverse: true})) {
            console.log(`  ${kind} patch ${name}: already applied`);
            applied.push(name);
        } else if (applies(repo, file)) {
            git(["apply", "--ignore-whitespace", file], repo);
            console.log(`  ${kind} patch ${name}: applied`);
            applied.push(name);
        } else if (required) {
            let detail = "";
            try {
                git(["apply", "--check", "--ignore-whitespace", file], repo);
            } catch (error) {
                detail = `\n${error.message}`;
            }
            throw new BuildError(`${kind} patch ${name} neither applies to ${repo} nor is applied there.${detail}\n` +
                "Run `node scripts/build-llama.mjs --check`; if llama.cpp changed, port the patch (see its header).");
        } else
            console.warn(`  ${kind} patch ${name}: does not apply and is not applied; continuing as node-llama-cpp does`);
    }
    return applied;
}

/** Makes sure llama/llama.cpp holds the bundled source. Clones into a temporary folder and renames, so a concurrent
 *  clone (scripts/build-native.mjs, node-llama-cpp) of the same bundle just wins. */
function ensureSource(nlc) {
    const llamaDir = path.join(nlc.dir, "llama");
    const srcDir = path.join(llamaDir, "llama.cpp");
    const bundle = path.join(llamaDir, "gitRelease.bundle");
    const infoFile = path.join(llamaDir, "llama.cpp.info.json");
    const expected = existsSync(bundle) ? bundleHead(bundle) : null;

    if (!existsSync(path.join(srcDir, ".git"))) {
        if (existsSync(srcDir) && readdirSync(srcDir).length > 0)
            throw new BuildError(`${srcDir} exists but is not a git checkout (no .git). Remove it, or run \`git init -q\` ` +
                "in it if it holds the unpacked bundled source (see shared/design/gpu-recipe.md).");
        if (expected === null)
            throw new BuildError(`${bundle} is missing, so the llama.cpp source cannot be cloned without network. ` +
                "Reinstall node-llama-cpp (npm ci) or place a checkout at " + srcDir);
        const tmp = mkdtempSync(path.join(llamaDir, ".llama.cpp.weft-"));
        try {
            console.log(`cloning llama.cpp from ${path.relative(root, bundle)}`);
            git(["clone", "--quiet", bundle, path.join(tmp, "src")], llamaDir);
            git(["remote", "remove", "origin"], path.join(tmp, "src"));
            try {
                if (existsSync(srcDir))
                    rmSync(srcDir, {recursive: true}); // an empty folder
                renameSync(path.join(tmp, "src"), srcDir);
            } catch (error) {
                if (!existsSync(path.join(srcDir, ".git")))
                    throw error;
                console.log("  another process cloned it meanwhile; using that checkout");
            }
        } finally {
            rmSync(tmp, {recursive: true, force: true});
        }
    }

    if (!existsSync(infoFile)) {
        const release = JSON.parse(readFileSync(path.join(llamaDir, "binariesGithubRelease.json"), "utf8")).release;
        writeFileSync(infoFile, JSON.stringify({tag: release, llamaCppGithubRepo: "ggml-org/llama.cpp"}, null, 4));
    }

    // A checkout from `git init` over unpacked files has no HEAD: accept it, the patches' --check guard the content.
    const head = git(["rev-parse", "--verify", "--quiet", "HEAD"], srcDir, {quiet: true})?.trim() || null;
    if (expected !== null && head !== null && head !== expected)
        throw new BuildError(`${srcDir} is at commit ${head}, but node-llama-cpp ${nlc.version} bundles ${expected}. ` +
            "Remove that folder and rerun, so the build matches the bundled llama.cpp.");
    return {srcDir, commit: head ?? expected, release: JSON.parse(readFileSync(infoFile, "utf8")).tag};
}

function readMarker(markerPath) {
    try {
        const marker = JSON.parse(readFileSync(markerPath, "utf8"));
        if (marker?.schema === 1 && typeof marker.builds === "object" && marker.builds !== null)
            return marker;
    } catch {
        // absent or unreadable: start over
    }
    return {schema: 1, builds: {}};
}

function writeMarker(markerPath, marker) {
    const tmp = `${markerPath}.${process.pid}.tmp`;
    const {schema, nodeLlamaCppVersion, builds} = marker;
    writeFileSync(tmp, JSON.stringify({schema, nodeLlamaCppVersion, builds}, null, 4) + "\n");
    renameSync(tmp, markerPath);
}

/** node-llama-cpp's own test for a finished local build (compileLLamaCpp.js, getLocalBuildBinaryPath). */
function localBuildExists(nlc, folderName) {
    const folder = path.join(nlc.dir, "llama", "localBuilds", folderName);
    return existsSync(path.join(folder, "Release", "llama-addon.node")) &&
        existsSync(path.join(folder, "Release", "_nlcBuildMetadata.json")) &&
        existsSync(path.join(folder, "buildDone.status"));
}

/** Changes whenever node-llama-cpp (re)builds that folder, also outside this script (which may drop the patches). */
function buildStamp(nlc, folderName) {
    return statSync(path.join(nlc.dir, "llama", "localBuilds", folderName, "buildDone.status")).mtimeMs;
}

function cmakeOptionsFromEnv() {
    const prefix = "NODE_LLAMA_CPP_CMAKE_OPTION_";
    return Object.fromEntries(Object.entries(process.env)
        .filter(([key]) => key.startsWith(prefix) && key !== prefix)
        .map(([key, value]) => [key.slice(prefix.length), value])
        .sort(([a], [b]) => a.localeCompare(b)));
}

function sameJson(a, b) {
    const norm = (o) => JSON.stringify(Object.fromEntries(Object.entries(o ?? {}).sort(([x], [y]) => x.localeCompare(y))));
    return norm(a) === norm(b);
}

function runNode(args, cwd) {
    return new Promise((resolve, reject) => {
        const child = spawn(process.execPath, args, {cwd, stdio: "inherit", env: process.env});
        child.on("error", reject);
        child.on("close", (code, signal) => resolve(code ?? (signal ? 1 : 0)));
    });
}

function elapsed() {
    const s = (performance.now() - started) / 1000;
    return s >= 60 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${s.toFixed(1)} s`;
}

async function build(args) {
    const nlc = findNodeLlamaCpp();
    const weftPatches = listDiffs(weftPatchesDir);
    if (weftPatches.length === 0)
        throw new BuildError(`no patches in ${weftPatchesDir}`);
    const gpu = args.gpu === "false" ? false : args.gpu;
    const markerPath = path.join(nlc.dir, "llama", markerName);

    console.log(`node-llama-cpp ${nlc.version}: building llama.cpp for gpu=${String(gpu)} with Weft's patches`);
    const source = ensureSource(nlc);
    console.log(`llama.cpp ${source.release} at ${source.commit ?? "(unknown commit)"} in ${path.relative(root, source.srcDir)}`);
    const upstreamApplied = applyPatches(source.srcDir, listDiffs(path.join(nlc.dir, "llama", "patches")),
        {kind: "node-llama-cpp", required: false});
    applyPatches(source.srcDir, weftPatches, {kind: "weft", required: true});
    const patches = weftPatches.map((file) => ({name: path.basename(file), sha256: sha256(file)}));

    const marker = readMarker(markerPath);
    const customCmakeOptions = cmakeOptionsFromEnv();
    const current = Object.entries(marker.builds).find(([folderName, entry]) =>
        entry.gpu === gpu && sameJson(entry.customCmakeOptions, customCmakeOptions) && entry.llamaCppCommit === source.commit &&
        JSON.stringify(entry.patches) === JSON.stringify(patches) && localBuildExists(nlc, folderName) &&
        entry.buildStamp === buildStamp(nlc, folderName));
    if (current && !args.force) {
        console.log(`the patched build ${current[0]} is up to date (built ${current[1].builtAt}); --force rebuilds it`);
        console.log(`done in ${elapsed()}`);
        return;
    }

    const buildStarted = performance.now();
    const cli = path.join(nlc.dir, "dist", "cli", "cli.js");
    console.log(`$ node ${path.relative(root, cli)} source build --gpu ${String(gpu)} --noUsageExample`);
    const code = await runNode([cli, "source", "build", "--gpu", String(gpu), "--noUsageExample"], root);
    const buildSeconds = Math.round((performance.now() - buildStarted) / 100) / 10;

    // Forget builds that are gone (a failed build removes its output folder first).
    for (const folderName of Object.keys(marker.builds)) {
        if (!localBuildExists(nlc, folderName))
            delete marker.builds[folderName];
    }
    if (code !== 0) {
        writeMarker(markerPath, marker);
        throw new BuildError(`node-llama-cpp source build --gpu ${String(gpu)} failed (exit ${code}) after ${buildSeconds} s; ` +
            "see its output above");
    }

    const lastBuild = JSON.parse(readFileSync(path.join(nlc.dir, "llama", "lastBuild.json"), "utf8"));
    const folderName = lastBuild.folderName;
    if (typeof folderName !== "string" || !localBuildExists(nlc, folderName))
        throw new BuildError(`the build reported success but no finished local build was found (lastBuild.json: ${JSON.stringify(lastBuild)})`);
    const metadata = JSON.parse(readFileSync(
        path.join(nlc.dir, "llama", "localBuilds", folderName, "Release", "_nlcBuildMetadata.json"), "utf8"));
    if (metadata.buildOptions?.gpu !== gpu)
        throw new BuildError(`the build in ${folderName} is for gpu=${metadata.buildOptions?.gpu}, not ${String(gpu)}`);

    marker.nodeLlamaCppVersion = nlc.version;
    marker.builds[folderName] = {
        gpu,
        customCmakeOptions: metadata.buildOptions.customCmakeOptions ?? customCmakeOptions,
        llamaCppRelease: metadata.buildOptions.llamaCpp?.release ?? source.release,
        llamaCppCommit: source.commit,
        upstreamPatches: upstreamApplied,
        patches,
        builtAt: new Date().toISOString(),
        buildSeconds,
        buildStamp: buildStamp(nlc, folderName)
    };
    writeMarker(markerPath, marker);
    console.log(`patched build: ${path.relative(root, path.join(nlc.dir, "llama", "localBuilds", folderName))} ` +
        `(compile ${buildSeconds} s); recorded in ${path.relative(root, markerPath)}`);
    console.log(`done in ${elapsed()}`);
}

function check(args) {
    const nlc = findNodeLlamaCpp();
    const weftPatches = listDiffs(weftPatchesDir);
    const sourceSpec = args.source ?? path.join(nlc.dir, "llama", "gitRelease.bundle");
    if (!existsSync(sourceSpec))
        throw new BuildError(`${sourceSpec} does not exist`);
    const describe = statSync(sourceSpec).isFile() ? `bundle ${bundleHead(sourceSpec).slice(0, 12)}` : "checkout";
    console.log(`checking ${weftPatches.length} Weft patch(es) against the unpatched llama.cpp source ` +
        `(${describe}: ${path.relative(root, sourceSpec).startsWith("..") ? sourceSpec : path.relative(root, sourceSpec)})`);

    const tmp = mkdtempSync(path.join(os.tmpdir(), "weft-llama-check-"));
    let loud = false;
    try {
        const repo = path.join(tmp, "src");
        git(["clone", "--quiet", sourceSpec, repo], tmp);
        // The build applies node-llama-cpp's patches first, so check on top of them, quietly.
        for (const file of listDiffs(path.join(nlc.dir, "llama", "patches"))) {
            if (!applies(repo, file, {reverse: true}) && applies(repo, file))
                git(["apply", "--ignore-whitespace", file], repo);
        }
        for (const file of weftPatches) {
            const name = path.basename(file);
            if (applies(repo, file)) {
                console.log(`${name}: STILL NEEDED - the unpatched source still has the code it changes (applies cleanly)`);
                git(["apply", "--ignore-whitespace", file], repo); // later patches may build on it
            } else if (applies(repo, file, {reverse: true})) {
                console.log(`${name}: NOT NEEDED - the source already contains this change; drop the patch after re-verifying`);
            } else {
                loud = true;
                console.log(`${name}: RE-VERIFY - the patch no longer applies: llama.cpp changed the code it touches. ` +
                    "Check whether the new code still rejects what the patch allows (see the patch header), then port or drop it.");
            }
        }
    } finally {
        rmSync(tmp, {recursive: true, force: true});
    }
    if (loud)
        console.log("\n!!!!!!!! At least one Weft llama.cpp patch needs re-verification (see above) !!!!!!!!");

    const marker = readMarker(path.join(nlc.dir, "llama", markerName));
    const builds = Object.entries(marker.builds).filter(([folderName, entry]) =>
        localBuildExists(nlc, folderName) && entry.buildStamp === buildStamp(nlc, folderName));
    console.log(builds.length === 0
        ? "patched builds: none (node scripts/build-llama.mjs builds one)"
        : "patched builds: " + builds.map(([folderName, entry]) => `${folderName} (gpu=${String(entry.gpu)}, ` +
            `${entry.patches.map((p) => p.name).join(", ")}, built ${entry.builtAt})`).join("; "));
}

try {
    const args = parseArgs(process.argv.slice(2));
    if (args.check)
        check(args);
    else
        await build(args);
} catch (error) {
    console.error(`\nbuild-llama: ${error instanceof BuildError ? error.message : error?.stack ?? error}`);
    console.error(`failed after ${elapsed()}`);
    process.exit(1);
}
