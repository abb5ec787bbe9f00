#!/usr/bin/env bash
# Weft's one-call GPU benchmark: run on the lent GPU machine from the repository root, after scripts/gpu-pack.sh has
# filled .device/ here:
#
#   device run, kind nvidia-h100-x1 (or none), carry [".device"], timeout_s 600, command: bash scripts/gpu-run.sh
#
# In one command (the device allows 10 minutes): unpacks Node, npm, Node's headers, node_modules and the llama.cpp
# source from .device/pack; applies node-llama-cpp's and Weft's patches and builds llama.cpp for CUDA (arch 90) through
# scripts/build-llama.mjs; builds the native addon (scripts/build-native.mjs, or g++ directly if node-gyp fails); writes
# a random-weight f16 llama GGUF (test/fixtures/make-tiny-models.ts) in parallel with the build; then times TTFT of
# full / naive / chunk-head / hkvd (ratio 0.15) at 2k and 8k tokens and prints a Markdown table. Results and logs go to
# $OUT (gpu-run.log, ttft.md, ttft.jsonl, build logs).
#
# Environment (defaults are the GPU run's): WEFT_GPU (cuda; "false" for a CPU dry run of the whole flow),
# WEFT_CUDA_ARCH (90), WEFT_SIZES (2048,8192), WEFT_REPS (3), WEFT_RATIO (0.15), WEFT_CHUNK (512 tokens per chunk),
# WEFT_SHAPE ("layers embd heads kvHeads ff": 16 2048 16 8 5632), WEFT_BUDGET_S (570: no new benchmark run starts
# after this many seconds from the script's start), WEFT_WORK (/tmp/weft-gpu), WEFT_GPU_REUSE (1: on a warm machine
# whose previous call of this script built everything, keep node_modules, the CUDA build and the model, and only
# rebuild the native addon; minutes saved), WEFT_TRACE (1: log each step of each run, to find a hang), WEFT_STALL_S
# (25: a run whose log stops growing this long is stuck: stacks, then stopped), WEFT_VARIANTS (the main run's
# strategies: full,naive-pageable,naive,chunk-head,hkvd), WEFT_PROBE (1: short 8k runs that each change one thing).
set -uo pipefail

start=$(date +%s)
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
OUT="${OUT:-$root/.device/out}"
mkdir -p "$OUT"
export OUT
if [ -z "${WEFT_GPU_RUN_TEED:-}" ]; then # everything also goes to $OUT/gpu-run.log
    WEFT_GPU_RUN_TEED=1 bash "${BASH_SOURCE[0]}" "$@" 2>&1 | tee "$OUT/gpu-run.log"
    exit "${PIPESTATUS[0]}"
fi
gpu="${WEFT_GPU:-cuda}"
arch="${WEFT_CUDA_ARCH:-90}"
sizes="${WEFT_SIZES:-2048,8192}"
reps="${WEFT_REPS:-3}"
ratio="${WEFT_RATIO:-0.15}"
chunk="${WEFT_CHUNK:-512}"
read -r layers embd heads kvheads ff <<<"${WEFT_SHAPE:-16 2048 16 8 5632}"
budget="${WEFT_BUDGET_S:-570}"
work="${WEFT_WORK:-/tmp/weft-gpu}"
pack="$root/.device/pack"
nlc="$root/node_modules/node-llama-cpp"

say() { echo "[gpu-run $(($(date +%s) - start))s] $*"; }
die() { say "FAILED: $*"; exit 1; }
unxz_to() { # unxz_to FILE.xz -> stdout; xz when present, else Python's lzma
    if command -v xz >/dev/null; then xz -dc "$1"; else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"; fi
}

[ -f "$pack/node.xz" ] || die ".device/pack is missing: run scripts/gpu-pack.sh here and carry .device"
card="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
card="${card:-no GPU (nvidia-smi failed)}"
say "card: $card; gpu=$gpu arch=$arch sizes=$sizes reps=$reps ratio=$ratio shape=$layers x $embd h$heads/$kvheads ff$ff; $(nproc) cores"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
command -v nvcc >/dev/null || export PATH="$PATH:/usr/local/cuda/bin"
for tool in git make g++ cmake nvcc python3 xz ninja; do
    if command -v "$tool" >/dev/null; then version="$("$tool" --version 2>&1 | head -1)"; else version=MISSING; fi
    printf '  %-8s %s\n' "$tool" "$version"
done
command -v git >/dev/null || die "git is missing (scripts/build-llama.mjs applies patches with git apply)"

reuse=0
if [ "${WEFT_GPU_REUSE:-0}" = 1 ] && [ -f node_modules/.weft-gpu-pack ] && [ -f "$nlc/llama/weft-patches.json" ] &&
    [ -x "$work/nodedist/bin/node" ] && [ -f "$work/model.gguf" ]; then
    reuse=1
    export PATH="$work/nodedist/bin:$PATH"
    export npm_config_nodedir="$work/nodedist" npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
    say "reusing the previous call's node_modules, CUDA build and model"
fi

if [ $reuse = 0 ]; then
# ---- unpack: Node (+ headers and npm laid out as a Node dist), node_modules, the llama.cpp source
rm -rf "$work"
mkdir -p "$work/nodedist/bin" "$work/nodedist/lib/node_modules" "$work/fixtures/llama.cpp"
unxz_to "$pack/node.xz" >"$work/nodedist/bin/node" && chmod +x "$work/nodedist/bin/node" || die "unpacking node"
unxz_to "$pack/nodedist-include.tar.xz" | tar -C "$work/nodedist" --no-same-owner -xf - || die "unpacking Node's headers"
unxz_to "$pack/npm.tar.xz" | tar -C "$work/nodedist/lib/node_modules" --no-same-owner -xf - || die "unpacking npm"
printf '#!/bin/sh\nexec "%s/nodedist/bin/node" "%s/nodedist/lib/node_modules/npm/bin/npm-cli.js" "$@"\n' "$work" "$work" >"$work/nodedist/bin/npm"
printf '#!/bin/sh\nexec "%s/nodedist/bin/node" "%s/nodedist/lib/node_modules/npm/bin/npx-cli.js" "$@"\n' "$work" "$work" >"$work/nodedist/bin/npx"
chmod +x "$work/nodedist/bin/npm" "$work/nodedist/bin/npx"
export PATH="$work/nodedist/bin:$PATH"
export npm_config_nodedir="$work/nodedist" npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
# Replace only a node_modules this script unpacked (a warm machine's second call), never a developer's.
if [ -e node_modules ] && [ ! -f node_modules/.weft-gpu-pack ]; then
    die "node_modules exists and was not unpacked by this script: run this on the device (or a copy of the checkout)"
fi
rm -rf node_modules
unxz_to "$pack/node_modules.tar.xz" | tar --no-same-owner -xf - || die "unpacking node_modules"
unxz_to "$pack/llama.cpp.tar.xz" | tar -C "$nlc/llama" --no-same-owner -xf - || die "unpacking the llama.cpp source"
# node-llama-cpp treats the source as present when llama/llama.cpp/.git and llama/llama.cpp.info.json exist.
git -C "$nlc/llama/llama.cpp" init -q || die "git init in the llama.cpp source"
touch node_modules/.weft-gpu-pack
say "unpacked: node $(node --version), npm $(npm --version 2>/dev/null), $(ls node_modules | wc -l) packages"

# ---- the model, in the background (one core; the build takes the rest)
commit="$(git bundle list-heads "$pack/bundle-head.bundle" | awk '$2 == "HEAD" { print $1 }')"
cp "$pack/ggml-vocab-llama-spm.gguf" "$work/fixtures/llama.cpp/ggml-vocab-llama-spm.${commit:0:12}.gguf"
mkdir -p .device/run
cat >.device/run/make-model.ts <<'TS'
import {makeTinyLlama} from "../../test/fixtures/make-tiny-models.js";
const [outPath, layers, embd, heads, kvHeads, ff] = process.argv.slice(2);
const started = performance.now();
const result = await makeTinyLlama({vocab: "llama-spm", layers: Number(layers), embd: Number(embd), heads: Number(heads),
    kvHeads: Number(kvHeads), ff: Number(ff), contextLength: 32768, weightType: "f16", seed: 1, outPath: outPath!});
console.log(`model: ${(result.bytes / 2 ** 30).toFixed(2)} GiB written in ${((performance.now() - started) / 1000).toFixed(1)} s: ${result.path}`);
TS
model="$work/model.gguf"
fi
model="$work/model.gguf"
[ $reuse = 1 ] || (WEFT_LLAMA_BUNDLE="$pack/bundle-head.bundle" WEFT_FIXTURE_CACHE="$work/fixtures" \
    node --import tsx .device/run/make-model.ts "$model" "$layers" "$embd" "$heads" "$kvheads" "$ff" >"$OUT/model.log" 2>&1) &
model_pid=$!
[ $reuse = 1 ] && model_pid=

# ---- the native addon, in the background (headers only; seconds)
(
    if node scripts/build-native.mjs --strict --force --debug; then exit 0; fi
    echo "node-gyp build failed; compiling the addon with g++ directly"
    mkdir -p native/build/Release
    g++ -shared -fPIC -O2 -std=c++17 -fexceptions -fvisibility=hidden -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS -DBUILDING_NODE_EXTENSION -DWEFT_DEBUG_DIAGNOSTICS \
        -I"$work/nodedist/include/node" -I"$root/node_modules/node-addon-api" -I"$nlc/llama/addon" \
        -I"$nlc/llama/llama.cpp/include" -I"$nlc/llama/llama.cpp/ggml/include" \
        native/src/*.cpp -o native/build/Release/weft_native.node -ldl
) >"$OUT/native.log" 2>&1 &
native_pid=$!

# ---- llama.cpp with Weft's patches
if [ $reuse = 0 ]; then
say "building llama.cpp (gpu=$gpu) with Weft's patches"
if [ "$gpu" = cuda ]; then export NODE_LLAMA_CPP_CMAKE_OPTION_CMAKE_CUDA_ARCHITECTURES="$arch"; fi
node scripts/build-llama.mjs --gpu "$gpu" >"$OUT/build-llama.log" 2>&1
build_rc=$?
grep -E "patch|patched build|done in|failed|error" "$OUT/build-llama.log" | grep -v "^-- " | tail -20
[ $build_rc -eq 0 ] || { tail -40 "$OUT/build-llama.log"; die "scripts/build-llama.mjs --gpu $gpu exited $build_rc (log: build-llama.log)"; }
say "llama.cpp built"
fi
wait $native_pid; native_rc=$?
tail -3 "$OUT/native.log"
[ -f native/build/Release/weft_native.node ] || { cat "$OUT/native.log"; die "the native addon was not built (log: native.log)"; }
model_rc=0
if [ -n "$model_pid" ]; then wait $model_pid; model_rc=$?; cat "$OUT/model.log"; fi
[ $model_rc -eq 0 ] && [ -f "$model" ] || die "writing the model failed (log: model.log)"
say "native addon (rc $native_rc) and model ready"

# ---- the benchmark
cat >.device/run/ttft-gpu.ts <<'TS'
// Written by scripts/gpu-run.sh: TTFT of full / naive / chunk-head / hkvd on the patched llama.cpp build, one row per
// (context size, strategy), median of --reps runs after one warm-up each. Chunk KVs are computed before any timing
// (as ingest would), and served from the RAM tier of the chunk cache.
import {appendFile, mkdtemp, rm, writeFile} from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {parseArgs} from "node:util";
import {LlamaLogLevel, type LlamaContextSequence, type Token} from "node-llama-cpp";
import {type BlendStrategy, openBlendContext, prepareBlend} from "../../main/engine/blend/blend.js";
import {ChunkKvCache} from "../../main/engine/kv/chunk-cache.js";
import {captureLayerKV} from "../../main/engine/native/native-addon.js";
import {ResidentTier} from "../../main/engine/kv/resident-tier.js";
import {getPatchedLlama, type PatchedGpu} from "../../main/engine/native/patched-build.js";
import {prepareFull, type PreparedPrompt} from "../../main/engine/blend/prepare.js";
import {buildPrompt, type PromptSource} from "../../main/engine/prompt.js";
import {seededRandom, Vocabulary} from "../../bench/harness.js";

const {values: a} = parseArgs({options: {
    model: {type: "string"}, gpu: {type: "string", default: "cuda"}, sizes: {type: "string", default: "2048,8192"},
    chunk: {type: "string", default: "512"}, ratio: {type: "string", default: "0.15"}, reps: {type: "string", default: "3"},
    threads: {type: "string", default: String(Math.min(16, os.availableParallelism()))}, batch: {type: "string", default: "2048"},
    out: {type: "string"}, card: {type: "string", default: "?"},
    variants: {type: "string", default: "full,naive-pageable,naive,naive-resident,chunk-head,chunk-head-resident,hkvd,hkvd-askkv"},
    deadline: {type: "string", default: "0"}
}});
/** Epoch ms after which no new run starts (0: none): the device command has a hard limit, and a partial table beats none. */
const deadline = Number(a.deadline);
const pastDeadline = () => deadline > 0 && Date.now() > deadline;
const gpu = (a.gpu === "false" ? false : a.gpu) as PatchedGpu;
const sizes = a.sizes!.split(",").map(Number);
const chunkTokens = Number(a.chunk), ratio = Number(a.ratio), reps = Number(a.reps), threads = Number(a.threads);
const log = (s: string) => console.error(`[ttft ${(performance.now() / 1000).toFixed(1)}s] ${s}`);
const trace = (s: string) => {
    if (process.env.WEFT_TRACE === "1")
        log(`trace ${s}`);
};
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)]!;

const llama = await getPatchedLlama({gpu, maxThreads: threads, logLevel: LlamaLogLevel.error});
log(`llama: ${llama.buildType} gpu=${String(llama.gpu)}; devices ${(await llama.getGpuDeviceNames()).join(", ")}`);
let t = performance.now();
const model = await llama.loadModel({modelPath: a.model!, gpuLayers: gpu === false ? 0 : "max"});
const modelLoadMs = performance.now() - t;
const maxSize = Math.max(...sizes);
const context = await model.createContext({contextSize: maxSize + 512, batchSize: Number(a.batch), threads, sequences: 1, flashAttention: true});
const sequence = context.getSequence();
log(`model loaded in ${modelLoadMs.toFixed(0)} ms; context ${context.contextSize}, batch ${context.batchSize}, flash attention ${String(context.flashAttention)}`);
const dataDir = await mkdtemp(path.join(os.tmpdir(), "weft-ttft-"));
const cache = await ChunkKvCache.open({dataDir, ramBudgetBytes: 16 * 1024 ** 3, diskBudgetBytes: 0});
// Host tiers only by default; the "-resident" variants give the blend a resident (GPU) tier of their own.
const opened = await openBlendContext({llama, model, context, sequence, modelPath: a.model!, cache, threads, residentBudgetBytes: 0});
if (typeof opened === "string")
    throw new Error(`blend path unavailable: ${opened}`);
const blend = opened;

const random = seededRandom(7);
const vocabulary = new Vocabulary(random, 5000);
/** A chunk of text of about `n` tokens (sentences added until the tokenizer says n, then words trimmed). */
function chunkText(n: number): string {
    const words: string[] = [];
    while (model.tokenize(words.join(" ")).length < n)
        words.push(...vocabulary.sentence(8, 20).split(" "));
    while (words.length > 1 && model.tokenize(words.join(" ")).length > n)
        words.pop();
    return words.join(" ");
}

async function firstToken(seq: LlamaContextSequence, tokens: Token[]): Promise<void> {
    const it = seq.evaluate(tokens, {temperature: 0});
    try {
        await it.next();
    } finally {
        await it.return?.(undefined);
    }
}

/** The native splice's share of load: state MiB, build ms (rotation and copies on the CPU), set ms (llama_state_seq_set_data, host to device) and its GB/s. */
function spliceColumns(preps: PreparedPrompt[]): Record<string, string | number> {
    const splices = preps.map((p) => p.splice).filter((s) => s != null);
    if (splices.length === 0)
        return {spliceMiB: NaN, buildMs: NaN, setMs: NaN, setGBps: NaN, pinned: "-", residentMiB: NaN, residentMs: NaN, residentGBps: NaN};
    const setMs = median(splices.map((s) => s.setMs)), blob = splices[0]!.blobBytes;
    const residentMs = median(splices.map((s) => s.residentMs)), resident = splices[0]!.residentBytes;
    return {spliceMiB: blob / 2 ** 20, buildMs: blob > 0 ? median(splices.map((s) => s.buildMs)) : NaN, setMs: blob > 0 ? setMs : NaN,
        setGBps: blob > 0 ? blob / 1e9 / (setMs / 1000) : NaN, pinned: blob === 0 ? "-" : splices[0]!.pinned ? "yes" : "no",
        residentMiB: resident / 2 ** 20, residentMs: resident > 0 ? residentMs : NaN, residentGBps: resident > 0 ? resident / 1e9 / (residentMs / 1000) : NaN};
}

type Variant = {strategy: "full" | BlendStrategy, ratio: number, pinned?: boolean, resident?: boolean, askKvOnly?: boolean};
const known: Record<string, Variant> = {full: {strategy: "full", ratio: 0}, "naive-pageable": {strategy: "naive", ratio: 0, pinned: false},
    naive: {strategy: "naive", ratio: 0}, "chunk-head": {strategy: "chunk-head", ratio}, hkvd: {strategy: "hkvd", ratio},
    "naive-resident": {strategy: "naive", ratio: 0, resident: true}, "chunk-head-resident": {strategy: "chunk-head", ratio, resident: true},
    "hkvd-askkv": {strategy: "hkvd", ratio, askKvOnly: true}};
const variants: Variant[] = a.variants!.split(",").map((name) => {
    const variant = known[name];
    if (variant == null)
        throw new Error(`unknown variant ${name}; known: ${Object.keys(known).join(", ")}`);
    return variant;
});
const rows: Array<Record<string, string | number>> = [];
let skipped = 0;
for (const size of sizes) {
    if (pastDeadline()) {
        log(`size ${size}: skipped, past the deadline`);
        skipped++;
        continue;
    }
    const count = Math.max(1, Math.round(size / chunkTokens));
    // Header, labels and the question take some tokens: size the chunks so the whole prompt is about `size`.
    const probe = buildPrompt(model, "What does the third source say about the river?", [{n: 1, path: "doc-1.txt", text: "x"}], false);
    const overhead = probe.tokens.length - 1 + count * 8;
    const per = Math.floor((size - overhead) / count);
    const sources: PromptSource[] = Array.from({length: count}, (_, i) => ({n: i + 1, path: `doc-${i + 1}.txt`, text: chunkText(per)}));
    const prompt = buildPrompt(model, "What does the third source say about the river?", sources, false);
    const inChunks = prompt.segments.filter((s) => s.kind === "chunk").reduce((sum, s) => sum + s.tokens.length, 0);
    log(`size ${size}: prompt ${prompt.tokens.length} tokens, ${count} chunks (${inChunks} chunk tokens)`);
    t = performance.now();
    await prepareBlend(blend, prompt, "naive", 0); // computes and caches every chunk's KV
    log(`  chunk KVs computed and cached in ${(performance.now() - t).toFixed(0)} ms`);

    if (variants.some((variant) => variant.askKvOnly)) {
        // The switch must not change what is captured: compare both modes on this prompt.
        const tokens = prompt.tokens.slice(0, -1);
        const options = {contextSize: Math.ceil(tokens.length / 512) * 512, threads, flashAttention: true};
        delete process.env.WEFT_CAPTURE_ASK;
        const every = await captureLayerKV(model, tokens, 1, options);
        process.env.WEFT_CAPTURE_ASK = "kv";
        const kvOnly = await captureLayerKV(model, tokens, 1, options);
        delete process.env.WEFT_CAPTURE_ASK;
        let worst = 0;
        for (const key of ["k", "v"] as const)
            for (let i = 0; i < every[key].length; i++)
                worst = Math.max(worst, Math.abs(every[key][i]! - kvOnly[key][i]!));
        log(`  capture modes agree: max |K/V diff| ${worst} over ${every.k.length + every.v.length} values ` +
            `(every node: ${every.decodeMs.toFixed(1)} ms in decode; K/V nodes only: ${kvOnly.decodeMs.toFixed(1)} ms)`);
    }
    let fullMs = NaN;
    for (const variant of variants) {
        if (pastDeadline()) {
            log(`  ${variant.strategy}@${variant.ratio}: skipped, past the deadline`);
            skipped++;
            continue;
        }
        const runs: Array<{ttft: number, prep: PreparedPrompt}> = [];
        blend.pinned = variant.pinned ?? true;
        // Resident variants: the warm-up fills the tier (admission runs after it), the timed runs place from it.
        if (variant.resident)
            blend.resident = new ResidentTier(16 * 1024 ** 3);
        // A diagnostic switch of the capture pass (native/src/layer_capture.cpp): fewer stops inside the check layer.
        if (variant.askKvOnly)
            process.env.WEFT_CAPTURE_ASK = "kv";
        else
            delete process.env.WEFT_CAPTURE_ASK;
        for (let rep = 0; rep <= reps && !(rep >= 2 && pastDeadline()); rep++) {
            const start = performance.now();
            trace(`${size} ${variant.strategy} rep ${rep}: prepare`);
            const prep = variant.strategy === "full" ? await prepareFull(sequence, prompt.tokens)
                : await prepareBlend(blend, prompt, variant.strategy, variant.ratio);
            trace(`${size} ${variant.strategy} rep ${rep}: first token after ${prep.tokensToEvaluate.length} tokens`);
            await firstToken(sequence, prep.tokensToEvaluate);
            trace(`${size} ${variant.strategy} rep ${rep}: done`);
            await blend.residentAdmission;
            const ttft = performance.now() - start;
            if (rep > 0)
                runs.push({ttft, prep}); // rep 0 is the warm-up
            log(`  ${variant.strategy}@${variant.ratio} ${rep === 0 ? "warm-up" : `rep ${rep}`}: ${ttft.toFixed(1)} ms`);
        }
        blend.resident?.clear();
        delete blend.resident;
        const details = runs.flatMap((r) => r.prep.selectDetail != null ? [r.prep.selectDetail] : []);
        if (details.length > 0)
            log(`  ${variant.strategy}${variant.askKvOnly ? " (ask kv)" : ""} select detail, medians: capture ${median(details.map((d) => d.captureMs)).toFixed(1)} ms ` +
                `(in llama_decode ${median(details.map((d) => d.captureDecodeMs)).toFixed(1)} ms, of it copying K/V out ` +
                `${median(details.map((d) => d.captureCopyMs)).toFixed(1)} ms, ${details[0]!.captureDecodes} decodes), score ${median(details.map((d) => d.scoreMs)).toFixed(1)} ms`);
        const placements = runs.flatMap((r) => (r.prep.splice?.residentBytes ?? 0) > 0 ? [r.prep.splice!] : []);
        if (placements.length > 0)
            log(`  ${variant.strategy} resident placement, medians: cells ${median(placements.map((p) => p.residentPlaceMs)).toFixed(2)} ms, ` +
                `queue copies ${median(placements.map((p) => p.residentQueueMs)).toFixed(2)} ms, wait ${median(placements.map((p) => p.residentSyncMs)).toFixed(2)} ms`);
        const ttft = median(runs.map((r) => r.ttft));
        if (variant.strategy === "full")
            fullMs = ttft;
        const load = median(runs.map((r) => r.prep.kvLoadMs)), select = median(runs.map((r) => r.prep.selectMs));
        const recompute = median(runs.map((r) => r.prep.recomputeMs));
        const bytes = runs[0]!.prep.kvBytesLoaded;
        const row = {
            card: a.card!, strategy: (variant.strategy === "full" || variant.strategy === "naive" ? variant.strategy : `${variant.strategy} ${variant.ratio}`) +
                (variant.pinned === false ? " (pageable)" : "") + (variant.resident ? " (resident)" : "") + (variant.askKvOnly ? " (ask kv)" : ""),
            context: prompt.tokens.length, ttftMs: ttft, ratioToFull: ttft / fullMs, loadMs: load, selectMs: select, recomputeMs: recompute,
            restMs: ttft - load - select - recompute, recomputed: runs[0]!.prep.recomputedTokens, kvMiB: bytes / 2 ** 20,
            kvGBps: bytes > 0 && load > 0 ? bytes / 1e9 / (load / 1000) : NaN, runs: runs.length,
            ...spliceColumns(runs.map((r) => r.prep)),
            ttftRuns: runs.map((r) => Math.round(r.ttft * 10) / 10).join(" ")
        };
        rows.push(row);
        if (a.out)
            await appendFile(`${a.out}.jsonl`, JSON.stringify(row) + "\n");
    }
}

const head = ["card", "strategy", "context tokens", "TTFT ms", "ratio to full", "load ms", "select ms", "recompute ms", "rest ms",
    "recomputed", "KV MiB", "KV GB/s", "state MiB", "build ms", "set ms", "set GB/s", "pinned", "D2D MiB", "D2D ms", "D2D GB/s"];
const keys = ["card", "strategy", "context", "ttftMs", "ratioToFull", "loadMs", "selectMs", "recomputeMs", "restMs", "recomputed", "kvMiB", "kvGBps",
    "spliceMiB", "buildMs", "setMs", "setGBps", "pinned", "residentMiB", "residentMs", "residentGBps"];
const fmt = (v: string | number, k: string) => typeof v === "string" ? v : Number.isNaN(v) ? "-"
    : k === "ratioToFull" ? v.toFixed(3) : k === "kvGBps" || k === "setGBps" || k === "residentGBps" ? v.toFixed(2) : k === "context" || k === "recomputed" ? String(v) : v.toFixed(1);
const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${keys.map((k) => fmt(r[k]!, k)).join(" | ")} |`)];
console.log(lines.join("\n"));
if (skipped > 0)
    console.log(`\n${skipped} size(s)/strategies skipped: the run reached its deadline.`);
console.log(`\nmodel load ${modelLoadMs.toFixed(0)} ms; median of up to ${reps} runs after 1 warm-up (runs per row in the JSON); TTFT = prepare + evaluate the rest + first token; ` +
    "rest = TTFT - load - select - recompute (header/tail evaluation, first token); KV GB/s = chunk KV bytes served from the RAM tier / load ms " +
    "(load covers the cache lookup and the native splice: build = K rotation and copies into one state buffer on the CPU, " +
    "set = llama_state_seq_set_data loading it, host to device; pinned = the buffer is the GPU backend's pinned host memory; " +
    "(pageable) = the same naive run with an ordinary malloc'd buffer; (resident) = parts placed from the resident tier in GPU memory: " +
    "D2D = their device-to-device copies into the KV cache, K re-positioned by llama.cpp's K-shift inside the next decode).");
if (a.out) {
    await writeFile(`${a.out}.md`, lines.join("\n") + "\n");
}
await rm(dataDir, {recursive: true, force: true});
await context.dispose();
await model.dispose();
await llama.dispose();
TS
deadline=$(( (start + budget) * 1000 ))
stall="${WEFT_STALL_S:-25}"
say "benchmark: $((start + budget - $(date +%s))) s left before no new run starts"
rm -f "$OUT"/ttft*.jsonl

# Native stacks of a stuck run: every thread is sent SIGUSR2, which the addon (debug build) answers by
# printing that thread's stack to the run's stderr; the threads that were running (state R) are printed here,
# symbolized with addr2line where the frame is an offset into a library; all of them stay in the progress log.
dump_stacks() { # dump_stacks PID PROGRESS_LOG
    python3 - "$1" "$2" <<'PY'
import ctypes, os, re, shutil, subprocess, sys, time
pid, log = int(sys.argv[1]), sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
running = []
for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
    try:
        stat = open(f"/proc/{pid}/task/{tid}/stat").read()
        state = stat[stat.rindex(")") + 2]
        if state == "R" or tid == str(pid):
            running.append(tid)
        libc.syscall(234, pid, int(tid), 12)  # tgkill(pid, tid, SIGUSR2); one at a time, so the stacks do not interleave
        time.sleep(0.2)
    except (OSError, ValueError):
        pass
time.sleep(1)
text = open(log, errors="replace").read()
addr2line = shutil.which("addr2line")
for block in re.split(r"(?=--- native stack of thread )", text)[1:]:
    head = block.split("\n", 1)[0]
    tid = head.split()[-2]
    if tid not in running:
        continue
    print(f"  {head} ({'main' if tid == str(pid) else 'running'})")
    for line in block.split("\n")[1:]:
        m = re.match(r"(\S+?)\(([^)]*)\)\[(0x[0-9a-f]+)\]", line)
        if not m:
            if re.fullmatch(r"\[0x[0-9a-f]+\]", line):
                print("    (code without a symbol: JavaScript or JIT)")
                continue
            break
        lib, sym, _ = m.groups()
        where = sym
        off = re.fullmatch(r"\+(0x[0-9a-f]+)", sym)
        if off and addr2line and os.path.exists(lib):
            out = subprocess.run([addr2line, "-f", "-C", "-e", lib, off.group(1)], capture_output=True, text=True).stdout.split("\n")
            where = f"{out[0]} {os.path.basename(out[1]) if len(out) > 1 else ''}".strip()
        elif sym and "+" in sym:
            name = sym.split("+")[0]
            where = subprocess.run(["c++filt", name], capture_output=True, text=True).stdout.strip() or name if shutil.which("c++filt") else name
        print(f"    {os.path.basename(lib)}: {where[:160]}")
PY
}

# run_bench LABEL [VAR=VALUE ...] -- RUNNER-ARGS...: one run of the runner; a run whose progress log stops growing for
# WEFT_STALL_S seconds, or that outlives the budget by 20 s, is stuck: its thread states, the GPU's utilization and the
# running threads' native stacks are printed, then it is stopped, so the table and logs still come back.
run_bench() {
    local label="$1"; shift
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    local progress="$OUT/ttft-progress-$label.log"
    say "run $label: ${envs[*]:-(no extra environment)} $*"
    env ${envs[@]+"${envs[@]}"} node --import tsx .device/run/ttft-gpu.ts --model "$model" --gpu "$gpu" \
        --reps "$reps" --ratio "$ratio" --chunk "$chunk" --threads "$(nproc)" --card "$card" --deadline "$deadline" \
        --out "$OUT/ttft-$label" "$@" 2>"$progress" &
    local pid=$! size=-1 grown now
    grown=$(date +%s)
    while kill -0 $pid 2>/dev/null; do
        now=$(date +%s)
        if [ "$(stat -c %s "$progress")" != "$size" ]; then size=$(stat -c %s "$progress"); grown=$now; fi
        if [ $((now - grown)) -gt "$stall" ] || [ $((now - start)) -gt $((budget + 20)) ]; then
            say "run $label: no progress for $((now - grown)) s; last step: $(grep -v '^---\|^/\|^node\|^\s' "$progress" | tail -1)"
            for task in /proc/$pid/task/*; do echo "$(cat "$task/comm" 2>/dev/null) $(cat "$task/wchan" 2>/dev/null)"; done | sort | uniq -c | sed 's/^/  threads: /'
            nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null | sed 's/^/  GPU utilization, memory: /'
            dump_stacks $pid "$progress"
            kill -9 $pid
            break
        fi
        sleep 1
    done
    wait $pid
    local rc=$?
    grep -v " rep \| warm-up\|^---\|^/\|^node\|^\s\|^\[0x" "$progress" || true
    [ -f "$OUT/ttft-$label.md" ] && cat "$OUT/ttft-$label.md"
    say "run $label exited $rc"
    return $rc
}

run_bench main -- --sizes "$sizes" ${WEFT_VARIANTS:+--variants "$WEFT_VARIANTS"}
bench_rc=$?
# WEFT_PROBE=1: after the main run, short 8k runs that each change one thing, to find what a hang depends on.
if [ "${WEFT_PROBE:-0}" = 1 ]; then
    run_bench probe-naive-only -- --sizes 8192 --variants naive
    run_bench probe-graphs-off GGML_CUDA_DISABLE_GRAPHS=1 -- --sizes 8192 --variants naive-pageable,naive
    run_bench probe-launch-blocking CUDA_LAUNCH_BLOCKING=1 -- --sizes 8192 --variants naive-pageable
fi
say "wall time of this script $(($(date +%s) - start)) s"
exit $bench_rc
