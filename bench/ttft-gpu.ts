// TTFT of full / naive / chunk-head / hkvd on the patched llama.cpp build of a GPU machine, one row per (context size,
// strategy), median of --reps runs after one warm-up each. Chunk KVs are computed before any timing (as ingest would),
// and served from the RAM tier of the chunk cache. scripts/gpu-run.sh provisions the machine and runs this; results go
// to bench/GPU.md with the card.
import {appendFile, mkdtemp, rm, writeFile} from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {parseArgs} from "node:util";
import {LlamaLogLevel, type LlamaContextSequence, type Token} from "node-llama-cpp";
import {type BlendStrategy, openBlendSession} from "../main/engine/blend/blend.js";
import {ChunkKvCache} from "../main/engine/kv/chunk-cache.js";
import {ResidentTier} from "../main/engine/kv/resident-tier.js";
import {getPatchedLlama, type PatchedGpu} from "../main/engine/native/patched-build.js";
import {type FusedTrace, prepareFull, type PreparedPrompt, type SelectTrace, type SpliceTrace} from "../main/engine/blend/prepare.js";
import {buildPrompt, type PromptSource} from "../main/engine/prompt.js";
import {seededRandom, Vocabulary} from "./harness.js";

const {values: a} = parseArgs({options: {
    model: {type: "string"}, gpu: {type: "string", default: "cuda"}, sizes: {type: "string", default: "2048,8192"},
    chunk: {type: "string", default: "512"}, ratio: {type: "string", default: "0.15"}, reps: {type: "string", default: "3"},
    threads: {type: "string", default: String(Math.min(16, os.availableParallelism()))}, batch: {type: "string", default: "2048"},
    out: {type: "string"}, card: {type: "string", default: "?"},
    variants: {type: "string", default: "full,naive-pageable,naive,naive-resident,chunk-head,chunk-head-resident,hkvd,hkvd-resident,hkvd0-resident"},
    deadline: {type: "string", default: "0"}, trace: {type: "boolean", default: false}
}});
/** Epoch ms after which no new run starts (0: none): the device command has a hard limit, and a partial table beats none. */
const deadline = Number(a.deadline);
const pastDeadline = () => deadline > 0 && Date.now() > deadline;
const gpu = (a.gpu === "false" ? false : a.gpu) as PatchedGpu;
const sizes = a.sizes!.split(",").map(Number);
const chunkTokens = Number(a.chunk), ratio = Number(a.ratio), reps = Number(a.reps), threads = Number(a.threads);
const log = (s: string) => console.error(`[ttft ${(performance.now() / 1000).toFixed(1)}s] ${s}`);
const trace = (s: string) => {
    if (a.trace === true)
        log(`trace @${process.hrtime.bigint()} ${s}`); // CLOCK_MONOTONIC ns: scripts/cupti-summary.py places runs with it
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
const opened = await openBlendSession({llama, model, context, sequence, modelPath: a.model!, cache, threads, residentBudgetBytes: 0});
if (!opened.available)
    throw new Error(`blend path unavailable: ${opened.reason}`);
const blend = opened.value;

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

/** One timed run: what was prepared and the per-step timings the blend reported to its trace sink. */
type Run = {ttft: number, prep: PreparedPrompt, splice?: SpliceTrace, select?: SelectTrace, fused?: FusedTrace};

/** The native splice's share of load: state MiB, build ms (rotation and copies on the CPU), set ms (llama_state_seq_set_data, host to device) and its GB/s. */
function spliceColumns(runs: Run[]): Record<string, string | number> {
    const splices = runs.flatMap((r) => r.splice != null ? [r.splice] : []);
    if (splices.length === 0)
        return {spliceMiB: NaN, buildMs: NaN, setMs: NaN, setGBps: NaN, pinned: "-", residentMiB: NaN, residentMs: NaN, residentGBps: NaN};
    const setMs = median(splices.map((s) => s.setMs)), blob = splices[0]!.blobBytes;
    const residentMs = median(splices.map((s) => s.residentMs)), resident = splices[0]!.residentBytes;
    return {spliceMiB: blob / 2 ** 20, buildMs: blob > 0 ? median(splices.map((s) => s.buildMs)) : NaN, setMs: blob > 0 ? setMs : NaN,
        setGBps: blob > 0 ? blob / 1e9 / (setMs / 1000) : NaN, pinned: blob === 0 ? "-" : splices[0]!.pinned ? "yes" : "no",
        residentMiB: resident / 2 ** 20, residentMs: resident > 0 ? residentMs : NaN, residentGBps: resident > 0 ? resident / 1e9 / (residentMs / 1000) : NaN};
}

type Variant = {strategy: "full" | BlendStrategy, ratio: number, pinned?: boolean, resident?: boolean, fusedMask?: "host" | "graph"};
const known: Record<string, Variant> = {full: {strategy: "full", ratio: 0}, "naive-pageable": {strategy: "naive", ratio: 0, pinned: false},
    naive: {strategy: "naive", ratio: 0}, "chunk-head": {strategy: "chunk-head", ratio}, hkvd: {strategy: "hkvd", ratio},
    "naive-resident": {strategy: "naive", ratio: 0, resident: true}, "chunk-head-resident": {strategy: "chunk-head", ratio, resident: true},
    // hkvd's fused decode (patch 0003) selects and recomputes in one pass; at ratio 0 it runs only the selection's share
    // (layers 0..check for every token, plus the labels and question), so the two rows split select from recompute.
    "hkvd-resident": {strategy: "hkvd", ratio, resident: true}, "hkvd0-resident": {strategy: "hkvd", ratio: 0, resident: true},
    hkvd0: {strategy: "hkvd", ratio: 0},
    // the fused decode's mask filled on the host and copied over (patch 0004's sorted fill), against "auto" (in the graph on a GPU)
    "hkvd-resident-hostmask": {strategy: "hkvd", ratio, resident: true, fusedMask: "host"},
    "hkvd0-resident-hostmask": {strategy: "hkvd", ratio: 0, resident: true, fusedMask: "host"}};
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
    await blend.prepare(prompt, "naive", 0); // computes and caches every chunk's KV
    log(`  chunk KVs computed and cached in ${(performance.now() - t).toFixed(0)} ms`);

    let fullMs = NaN;
    for (const variant of variants) {
        if (pastDeadline()) {
            log(`  ${variant.strategy}@${variant.ratio}: skipped, past the deadline`);
            skipped++;
            continue;
        }
        const runs: Run[] = [];
        // Resident variants: the warm-up fills the tier (admission runs after it), the timed runs place from it.
        if (variant.resident)
            await blend.replaceResidentTier(new ResidentTier(16 * 1024 ** 3));
        for (let rep = 0; rep <= reps && !(rep >= 2 && pastDeadline()); rep++) {
            const start = performance.now();
            trace(`${size} ${variant.strategy}@${variant.ratio}${variant.resident ? "-resident" : ""} rep ${rep}: prepare`);
            const traced: {splice?: SpliceTrace, select?: SelectTrace, fused?: FusedTrace} = {};
            const prep = variant.strategy === "full" ? await prepareFull(sequence, prompt.tokens)
                : await blend.prepare(prompt, variant.strategy, variant.ratio, {
                    pinned: variant.pinned ?? true,
                    ...(variant.fusedMask != null ? {fusedMask: variant.fusedMask} : {}),
                    trace: {splice: (splice) => traced.splice = splice, select: (select) => traced.select = select, fused: (fused) => traced.fused = fused}
                });
            trace(`${size} ${variant.strategy}@${variant.ratio}${variant.resident ? "-resident" : ""} rep ${rep}: first token after ${prep.tokensToEvaluate.length} tokens`);
            await firstToken(sequence, prep.tokensToEvaluate);
            trace(`${size} ${variant.strategy}@${variant.ratio}${variant.resident ? "-resident" : ""} rep ${rep}: done`);
            await blend.admissionsSettled();
            const ttft = performance.now() - start;
            if (rep > 0)
                runs.push({ttft, prep, ...traced}); // rep 0 is the warm-up
            log(`  ${variant.strategy}@${variant.ratio} ${rep === 0 ? "warm-up" : `rep ${rep}`}: ${ttft.toFixed(1)} ms`);
        }
        (await blend.replaceResidentTier(undefined))?.clear();
        const details = runs.flatMap((r) => r.select != null ? [r.select] : []);
        if (details.length > 0)
            log(`  ${variant.strategy} select detail, medians: capture ${median(details.map((d) => d.captureMs)).toFixed(1)} ms ` +
                `(in llama_decode ${median(details.map((d) => d.captureDecodeMs)).toFixed(1)} ms, of it copying K/V out ` +
                `${median(details.map((d) => d.captureCopyMs)).toFixed(1)} ms, ${details[0]!.captureDecodes} decodes), score ${median(details.map((d) => d.scoreMs)).toFixed(1)} ms`);
        const fusedRuns = runs.flatMap((r) => r.fused != null ? [r.fused] : []);
        if (fusedRuns.length > 0)
            log(`  ${variant.strategy}@${variant.ratio} fused decode, medians: ${median(fusedRuns.map((f) => f.decodeMs)).toFixed(1)} ms in ` +
                `${fusedRuns[0]!.decodes} decodes (selection and recompute in one graph; fallback: ${runs[0]!.prep.fallbackReason ?? "none"}); ` +
                `each, median: ${fusedRuns[0]!.decodeMsEach.map((_, i) => median(fusedRuns.map((f) => f.decodeMsEach[i] ?? NaN)).toFixed(1)).join(" ")} ms`);
        const placements = runs.flatMap((r) => r.splice != null && r.splice.residentBytes > 0 ? [r.splice] : []);
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
                (variant.pinned === false ? " (pageable)" : "") + (variant.resident ? " (resident)" : "") + (variant.fusedMask != null ? ` (${variant.fusedMask} mask)` : ""),
            context: prompt.tokens.length, ttftMs: ttft, ratioToFull: ttft / fullMs, loadMs: load, selectMs: select, recomputeMs: recompute,
            restMs: ttft - load - select - recompute, recomputed: runs[0]!.prep.recomputedTokens, kvMiB: bytes / 2 ** 20,
            kvGBps: bytes > 0 && load > 0 ? bytes / 1e9 / (load / 1000) : NaN, runs: runs.length,
            ...spliceColumns(runs),
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
    "D2D = their device-to-device copies into the KV cache, K re-positioned by llama.cpp's K-shift inside the next decode). " +
    "hkvd runs as one fused decode (patch 0003): its select ms is 0 and its recompute ms holds selection and recompute; the hkvd 0 row " +
    "(ratio 0: layers 0..1 of every token plus labels and question) is the selection's share, so breakdown: place = load, select = " +
    "hkvd 0's recompute, recompute = hkvd 0.15's recompute minus it, question = rest.");
if (a.out) {
    await writeFile(`${a.out}.md`, lines.join("\n") + "\n");
}
await rm(dataDir, {recursive: true, force: true});
await context.dispose();
await model.dispose();
await llama.dispose();
