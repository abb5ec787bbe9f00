// TTFT of full / naive / chunk-head / hkvd on the patched llama.cpp build of a GPU machine, one row per (context size,
// strategy), median of --reps runs after one warm-up each. Chunk KVs are computed before any timing (as ingest would),
// and served from the RAM tier of the chunk cache. The "-cold" variants (issue #13's GPU target) serve them from the
// disk tier instead: a cache with no RAM tier that stores the KV codec's container (level: --cold-level, or -lN in the
// variant's name), the files evicted from the page cache before each run, the product's controller choosing per chunk
// between reading and decoding the file and recomputing the chunk; a second table says what it chose. scripts/gpu-run.sh
// provisions the machine and runs this; results go to bench/GPU.md with the card.
import {appendFile, mkdtemp, rm, stat, writeFile} from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {parseArgs} from "node:util";
import {LlamaLogLevel, type LlamaContextSequence, type Token} from "node-llama-cpp";
import {type BlendSession, openBlendSession, promptFormatVersion} from "../main/engine/blend/blend.js";
import {tokensHash} from "../main/engine/blend/chunk-kv-source.js";
import {defaultFocus, nameTokenTest} from "../main/engine/blend/focus.js";
import {inFocusOrder} from "../main/engine/blend/focus-order.js";
import type {ChunkKvStats} from "../main/contract/index.js";
import {ChunkKvCache} from "../main/engine/kv/chunk-cache.js";
import {kvCodecDefaultLevel, kvCodecLevelCount} from "../main/engine/kv/kv-codec.js";
import {ResidentTier} from "../main/engine/kv/resident-tier.js";
import {getPatchedLlama, type PatchedGpu} from "../main/engine/native/patched-build.js";
import {createModelContext} from "../main/engine/context-batch.js";
import {decodeBatchSize, type DecodeMaskMode, fusedBlendPhases, getContextSequenceState, sequenceIdOf, setDecodeMaskMode} from "../main/engine/native/native-addon.js";
import {parseSeqStateMemory} from "../main/engine/kv/kv-blob.js";
import {cellOrder} from "./cell-order.js";
import {type FusedTrace, prepareFull, type PreparedPrompt, type SelectTrace, type SpliceTrace} from "../main/engine/blend/prepare.js";
import {buildPrompt, type ChunkTokenMemo, firstSourceLead, type PromptSource} from "../main/engine/prompt.js";
import {median, seededRandom, Vocabulary} from "./harness.js";
import {PageCacheTools} from "./page-cache.js";
import {parseGpuVariants, type Variant} from "./ttft-gpu-variants.js";
import {logitsAfter, maxAbsDiff} from "../test/helpers/logits.js";

const {values: a} = parseArgs({options: {
    model: {type: "string"}, gpu: {type: "string", default: "cuda"}, sizes: {type: "string", default: "2048,8192"},
    chunk: {type: "string", default: "512"}, ratio: {type: "string", default: "0.15"}, reps: {type: "string", default: "3"},
    threads: {type: "string", default: String(Math.min(16, os.availableParallelism()))}, batch: {type: "string", default: "auto"},
    out: {type: "string"}, card: {type: "string", default: "?"},
    variants: {type: "string", default: "full,naive-pageable,naive,naive-resident,chunk-head,chunk-head-resident,hkvd,hkvd-resident,hkvd0-resident"},
    deadline: {type: "string", default: "0"}, trace: {type: "boolean", default: false},
    /** After the first size's rows: the next-token logits of full, hkvd 1.0 and hkvd at --ratio (resident, twice each), compared. */
    check: {type: "boolean", default: false},
    /** Where ordinary decodes (the full prefill, the question) build their causal mask: patch 0008's modes. */
    "decode-mask": {type: "string", default: "auto"},
    /** The codec level of the "-cold" variants' disk files (a variant's "-lN" suffix overrides it). */
    "cold-level": {type: "string", default: String(kvCodecDefaultLevel)}
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

// before anything large is in memory (page-cache.ts says why)
const pageCache = PageCacheTools.start();
const llama = await getPatchedLlama({gpu, maxThreads: threads, logLevel: LlamaLogLevel.error});
log(`llama: ${llama.buildType} gpu=${String(llama.gpu)}; devices ${(await llama.getGpuDeviceNames()).join(", ")}`);
let t = performance.now();
const model = await llama.loadModel({modelPath: a.model!, gpuLayers: gpu === false ? 0 : "max"});
const modelLoadMs = performance.now() - t;
const maxSize = Math.max(...sizes);
// --batch auto: the app's own sizes (llama-runtime.ts: node-llama-cpp feeds 2048 per decode, the ubatch is 8192 where
// the GPU has room); a number N: N for both, as node-llama-cpp makes it
const context = a.batch === "auto"
    ? await createModelContext(llama, model, {contextSize: maxSize + 512, threads, flashAttention: true})
    : await model.createContext({contextSize: maxSize + 512, batchSize: Number(a.batch), threads, sequences: 1, flashAttention: true});
const sequence = context.getSequence();
const decodeMask = a["decode-mask"] as DecodeMaskMode;
const decodeMaskSet = await setDecodeMaskMode(context, decodeMask);
log(`model loaded in ${modelLoadMs.toFixed(0)} ms; context ${context.contextSize}, batch ${context.batchSize} (ubatch ${decodeBatchSize(context)}), flash attention ${String(context.flashAttention)}, ` +
    `decode mask ${decodeMask}${decodeMaskSet ? "" : " (not set: no patch 0008)"}`);
const dataDir = await mkdtemp(path.join(os.tmpdir(), "weft-ttft-"));
const cache = await ChunkKvCache.open({dataDir, ramBudgetBytes: 16 * 1024 ** 3, diskBudgetBytes: 0});
// Host tiers only by default; the "-resident" variants give the blend a resident (GPU) tier of their own.
const isNameToken = nameTokenTest(model);
/** Every size's question: the blends recompute whole the chunks sharing its rarest tokens (focus.ts). */
const question = "What does the third source say about the river?";
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

const vocabularySize = model.fileInfo.metadata.tokenizer.ggml.tokens.length;

/**
 * A correctness check on the device (--check): hkvd's resident path with its queued decodes must be deterministic (two
 * runs, the same logits) and at ratio 1.0 recompute every token, so its logits match the full prefill's up to the
 * numeric noise of other batch shapes. A race between a decode's host work and the device's work on the one before
 * (patch 0010 lets them overlap) would show as runs that differ.
 */
async function checkLogits(prompt: ReturnType<typeof buildPrompt>): Promise<void> {
    const full = await logitsAfter(sequence, vocabularySize, (await prepareFull(sequence, prompt.tokens)).tokensToEvaluate);
    const out: string[] = [];
    for (const ratioChecked of [1, ratio]) {
        await blend.replaceResidentTier(new ResidentTier(16 * 1024 ** 3));
        const runs: Float64Array[] = [];
        for (let rep = 0; rep < 3; rep++) { // the first fills the resident tier
            const prep = await blend.prepare(prompt, "hkvd", ratioChecked);
            runs.push(await logitsAfter(sequence, vocabularySize, prep.tokensToEvaluate));
            await blend.admissionsSettled();
        }
        (await blend.replaceResidentTier(undefined))?.clear();
        out.push(`hkvd ${ratioChecked} resident: runs 2 vs 3 max |diff| ${maxAbsDiff(runs[1]!, runs[2]!).toExponential(2)}, ` +
            `vs full ${maxAbsDiff(runs[1]!, full).toExponential(2)} (host path, run 1, vs full ${maxAbsDiff(runs[0]!, full).toExponential(2)})`);
    }
    const again = await logitsAfter(sequence, vocabularySize, (await prepareFull(sequence, prompt.tokens)).tokensToEvaluate);
    log(`  logits check, ${prompt.tokens.length} tokens: full vs full ${maxAbsDiff(full, again).toExponential(2)}; ${out.join("; ")}`);
    // The cells' order after each resident blend: a cell holding an earlier position than a cell before it makes the
    // GPU's flash attention run a query tile past its own positions (every tile, if that cell is at the end).
    const orders: string[] = [];
    for (const strategy of ["naive", "chunk-head", "hkvd"] as const) {
        await blend.replaceResidentTier(new ResidentTier(16 * 1024 ** 3));
        for (let rep = 0; rep < 2; rep++) { // the first fills the resident tier
            await blend.prepare(prompt, strategy, strategy === "naive" ? 0 : ratio);
            await blend.admissionsSettled();
        }
        (await blend.replaceResidentTier(undefined))?.clear();
        const positions = parseSeqStateMemory(new Uint8Array(await getContextSequenceState(context, sequenceIdOf(sequence)))).body.cells.map((cell) => cell.pos);
        const {laterLow, drop} = cellOrder(positions);
        orders.push(`${strategy}: ${positions.length} cells, ${laterLow} with a lower position after them (largest drop ${drop})`);
    }
    log(`  cell order after a resident blend: ${orders.join("; ")}`);
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

const defaultColdLevel = Number(a["cold-level"]);
if (!(Number.isInteger(defaultColdLevel) && defaultColdLevel >= 0 && defaultColdLevel < kvCodecLevelCount))
    throw new Error(`--cold-level must be a codec level 0..${kvCodecLevelCount - 1}`);
const variants: Variant[] = parseGpuVariants(a.variants!, ratio, defaultColdLevel);

/**
 * One cold session per codec level: a chunk cache with no RAM tier (so every chunk not recomputed comes from its disk
 * file), the product's disk budget, files in the codec's container decoded with the engine's thread count (model-host.ts
 * gives the cache the engine's threads, the core count), and a blend session of its own (its own controller) over
 * the same context, without a resident tier.
 */
type ColdSession = {level: number, dir: string, cache: ChunkKvCache, blend: BlendSession};
const coldSessions = new Map<number, ColdSession>();
for (const level of new Set(variants.flatMap((variant) => variant.coldLevel != null ? [variant.coldLevel] : []))) {
    const dir = path.join(dataDir, `cold-l${level}`);
    const coldCache = await ChunkKvCache.open({dataDir: dir, ramBudgetBytes: 0, diskBudgetBytes: 8 * 1024 ** 3, codec: {level, threads}});
    const coldOpened = await openBlendSession({llama, model, context, sequence, modelPath: a.model!, cache: coldCache, threads, residentBudgetBytes: 0});
    if (!coldOpened.available)
        throw new Error(`blend path unavailable: ${coldOpened.reason}`);
    if (!coldCache.codecOn)
        throw new Error("the cold variants need the KV codec, which needs the native addon");
    coldSessions.set(level, {level, dir, cache: coldCache, blend: coldOpened.value});
}
if (coldSessions.size > 0)
    log(`cold sessions at codec level(s) ${[...coldSessions.keys()].join(", ")}: chunk files under ${dataDir} (${await pageCache.filesystemOf(dataDir)}), ` +
        `decode threads ${threads}`);

/** "disk@L4 12 + recompute 4": where a run's chunk KVs came from. */
function sourceCounts(chunks: readonly ChunkKvStats[]): string {
    const counts = new Map<string, number>();
    for (const chunk of chunks) {
        const name = chunk.kvSource === "disk" && chunk.codecLevel != null ? `disk@L${chunk.codecLevel}` : chunk.kvSource;
        counts.set(name, (counts.get(name) ?? 0) + 1);
    }
    return [...counts].map(([name, count]) => `${name} ${count}`).join(" + ");
}
/** What the cold rows add: per run (warm-up first) the chunks' sources, the bytes read, the page cache left after eviction. */
type ColdRun = {sources: string, bytesRead: number, cachedAfterEvict: number | null, fileBytes: number};
const coldRows: Array<Record<string, string | number>> = [];
let pageCacheProblem: string | null = null;
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
    const probe = buildPrompt(model, question, [{n: 1, path: "doc-1.txt", text: "x"}], false);
    const overhead = probe.tokens.length - 1 + count * 8;
    const per = Math.floor((size - overhead) / count);
    const sources: PromptSource[] = Array.from({length: count}, (_, i) => ({n: i + 1, path: `doc-${i + 1}.txt`, text: chunkText(per)}));
    const memo: ChunkTokenMemo = new Map();
    const prompt = buildPrompt(model, question, sources, false, memo);
    // hkvd and chunk-head get the question's sources first, renumbered, as the chat service gives them (focus-order.ts),
    // inside the timed run as on the question's path, with the chunk tokens the first build made
    const promptOf = (variant: Variant) => variant.strategy !== "hkvd" && variant.strategy !== "chunk-head" ? prompt
        : inFocusOrder(prompt, sources, variant.focus ?? defaultFocus, isNameToken,
            (moved) => buildPrompt(model, question, moved, false, memo)).prompt;
    const inChunks = prompt.segments.filter((s) => s.kind === "chunk").reduce((sum, s) => sum + s.tokens.length, 0);
    log(`size ${size}: prompt ${prompt.tokens.length} tokens, ${count} chunks (${inChunks} chunk tokens)`);
    t = performance.now();
    await blend.prepare(prompt, "naive", 0); // computes and caches every chunk's KV
    // and each chunk's lead version, for when it is the first source (background warming computes both)
    for (const segment of prompt.segments)
        if (segment.kind === "chunk")
            await blend.leadKv(firstSourceLead(model, segment.source!.path, false), segment.tokens);
    log(`  chunk KVs computed and cached in ${(performance.now() - t).toFixed(0)} ms`);
    const chunkSegments = prompt.segments.filter((segment) => segment.kind === "chunk");
    /** Cold levels whose files this size has on disk; a failure here skips only those rows, not the rest of the table. */
    const coldReady = new Set<number>();
    for (const cold of coldSessions.values()) {
        if (pastDeadline())
            break;
        // As background warming does: each chunk computed alone and stored (encoded) on the disk tier; the prefills
        // are the controller's first measure of the recompute side.
        t = performance.now();
        try {
            const f16Before = cold.cache.stats().disk.f16Bytes;
            for (const segment of chunkSegments)
                await cold.blend.chunkKv(segment.tokens);
            let fileBytes = 0;
            for (const segment of chunkSegments)
                fileBytes += (await stat(cold.cache.pathOf({fingerprint: cold.blend.fingerprint, chunkHash: tokensHash(segment.tokens), promptFormatVersion}))).size;
            log(`  cold L${cold.level}: chunk KVs computed alone, encoded and written in ${(performance.now() - t).toFixed(0)} ms: ` +
                `${(fileBytes / 2 ** 20).toFixed(1)} MiB of files for ${((cold.cache.stats().disk.f16Bytes - f16Before) / 2 ** 20).toFixed(1)} MiB of f16 KV`);
            coldReady.add(cold.level);
        } catch (error) {
            log(`  cold L${cold.level}: storing the chunk files failed, its rows are skipped: ${(error as Error).message}; ` +
                `cache ${JSON.stringify(cold.cache.stats().disk)}`);
        }
    }

    let fullMs = NaN;
    for (const variant of variants) {
        if (pastDeadline()) {
            log(`  ${variant.strategy}@${variant.ratio}: skipped, past the deadline`);
            skipped++;
            continue;
        }
        const runs: Run[] = [];
        const coldRuns: ColdRun[] = [];
        const cold = variant.coldLevel != null ? coldSessions.get(variant.coldLevel)! : undefined;
        if (cold != null && !coldReady.has(cold.level)) {
            log(`  ${variant.strategy}@${variant.ratio} cold L${cold.level}: skipped, no chunk files`);
            skipped++;
            continue;
        }
        const session = cold?.blend ?? blend;
        // Resident variants: the warm-up fills the tier (admission runs after it), the timed runs place from it.
        if (variant.resident)
            await blend.replaceResidentTier(new ResidentTier(16 * 1024 ** 3));
        let warmupFused: FusedTrace | undefined;
        for (let rep = 0; rep <= reps && !(rep >= 2 && pastDeadline()); rep++) {
            let cachedAfterEvict: number | null = null, fileBytes = 0;
            if (cold != null) {
                pageCacheProblem ??= await pageCache.evict(cold.dir);
                ({cachedBytes: cachedAfterEvict, fileBytes} = await pageCache.residency(cold.dir));
            }
            const start = performance.now();
            trace(`${size} ${variant.strategy}@${variant.ratio}${variant.resident ? "-resident" : ""} rep ${rep}: prepare`);
            const traced: {splice?: SpliceTrace, select?: SelectTrace, fused?: FusedTrace} = {};
            const prep = variant.strategy === "full" ? await prepareFull(sequence, prompt.tokens)
                : await session.prepare(promptOf(variant), variant.strategy, variant.ratio, {
                    pinned: variant.pinned ?? true,
                    ...(variant.focus != null ? {focus: variant.focus} : {}),
                    ...(variant.fusedMask != null ? {fusedMask: variant.fusedMask} : {}),
                    // as the engine does: a cold blend is weighed against a full prefill (this run's own full row)
                    ...(cold != null && Number.isFinite(fullMs) ? {fullPrefillMs: fullMs} : {}),
                    // the warm-up asks for the fused decodes' host phases, which make each decode wait for the device
                    trace: {splice: (splice) => traced.splice = splice, select: (select) => traced.select = select, fused: (fused) => traced.fused = fused,
                        fusedPhases: rep === 0}
                });
            trace(`${size} ${variant.strategy}@${variant.ratio}${variant.resident ? "-resident" : ""} rep ${rep}: first token after ${prep.tokensToEvaluate.length} tokens`);
            await firstToken(sequence, prep.tokensToEvaluate);
            trace(`${size} ${variant.strategy}@${variant.ratio}${variant.resident ? "-resident" : ""} rep ${rep}: done`);
            await blend.admissionsSettled();
            const ttft = performance.now() - start;
            await session.storesSettled();  // disk files a run queued are written before the next run starts
            if (rep > 0)
                runs.push({ttft, prep, ...traced}); // rep 0 is the warm-up
            else
                warmupFused = traced.fused;
            if (cold != null)
                coldRuns.push({sources: sourceCounts(prep.chunkKv ?? []), bytesRead: prep.kvBytesRead ?? 0, cachedAfterEvict, fileBytes});
            log(`  ${variant.strategy}@${variant.ratio}${cold != null ? ` cold L${cold.level}` : ""} ${rep === 0 ? "warm-up" : `rep ${rep}`}: ` +
                `${ttft.toFixed(1)} ms${cold != null ? ` (${coldRuns.at(-1)!.sources})` : ""}`);
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
        // each decode's host phases (patch 0003's phase_ms) in the warm-up, whose decodes each waited for the device:
        // where a decode's time goes before and while the device works
        if (warmupFused?.phaseMsEach != null && warmupFused.phaseMsEach.length === warmupFused.decodes)
            log(`  ${variant.strategy}@${variant.ratio} fused decode phases, warm-up (each decode waited; ${warmupFused.decodeMs.toFixed(1)} ms in all), ms ` +
                `(${fusedBlendPhases.join(" / ")}): ${warmupFused.phaseMsEach.map((phases) => phases.map((ms) => ms.toFixed(1)).join("/")).join("  ")}`);
        const placements = runs.flatMap((r) => r.splice != null && r.splice.residentBytes > 0 ? [r.splice] : []);
        if (placements.length > 0)
            log(`  ${variant.strategy} resident placement, medians: cells ${median(placements.map((p) => p.residentPlaceMs)).toFixed(2)} ms, ` +
                `queue ${placements[0]!.residentCopies} copies ${median(placements.map((p) => p.residentQueueMs)).toFixed(2)} ms, wait ${median(placements.map((p) => p.residentSyncMs)).toFixed(2)} ms`);
        const ttft = median(runs.map((r) => r.ttft));
        if (variant.strategy === "full")
            fullMs = ttft;
        const load = median(runs.map((r) => r.prep.kvLoadMs)), select = median(runs.map((r) => r.prep.selectMs));
        const recompute = median(runs.map((r) => r.prep.recomputeMs));
        const bytes = runs[0]!.prep.kvBytesLoaded;
        const row = {
            card: a.card!, strategy: (variant.strategy === "full" || variant.strategy === "naive" ? variant.strategy : `${variant.strategy} ${variant.ratio}`) +
                (variant.pinned === false ? " (pageable)" : "") + (variant.resident ? " (resident)" : "") + (variant.fusedMask != null ? ` (${variant.fusedMask} mask)` : "") +
                (variant.focus == null ? "" : variant.focus.count === 0 ? " (no focus)" : ` (focus ${variant.focus.count}${variant.focus.hops > 0 ? ` +${variant.focus.hops} hop` : ""})`) +
                (variant.coldLevel != null ? ` cold (disk L${variant.coldLevel})` : ""),
            context: prompt.tokens.length, ttftMs: ttft, ratioToFull: ttft / fullMs, loadMs: load, selectMs: select, recomputeMs: recompute,
            restMs: ttft - load - select - recompute, recomputed: runs[0]!.prep.recomputedTokens, kvMiB: bytes / 2 ** 20,
            kvGBps: bytes > 0 && load > 0 ? bytes / 1e9 / (load / 1000) : NaN, runs: runs.length,
            ...spliceColumns(runs),
            ttftRuns: runs.map((r) => Math.round(r.ttft * 10) / 10).join(" ")
        };
        if (cold != null) {
            // The controller's rates after these runs and how it would now plan this prompt's chunks (as ChunkKvSource
            // does: both sides at once where the model's layers are on a GPU).
            const rates = cold.blend.kvController.rates();
            const fileBytesAvg = Math.round(coldRuns[0]!.fileBytes / Math.max(1, cold.cache.stats().disk.entries));
            const plan = cold.blend.kvController.plan(chunkSegments.map((segment) => ({tokens: segment.tokens.length, fileBytes: fileBytesAvg, coded: true})),
                {recomputeAlongside: llama.gpu !== false && model.gpuLayers > 0});
            const side = (source: "disk" | "recompute") => plan.filter((c) => c.source === source);
            const sum = (choices: typeof plan, key: "diskMs" | "recomputeMs") => choices.reduce((total, c) => total + c[key], 0);
            coldRows.push({
                card: a.card!, strategy: row.strategy, context: prompt.tokens.length, ttftMs: ttft, warmStrategy: "-", warmMs: NaN, xWarm: NaN,
                ratioToFull: ttft / fullMs, loadMs: load,
                sources: coldRuns.map((r, i) => `${i === 0 ? "w " : ""}${r.sources}`).join(" / "),
                readMiB: median(coldRuns.slice(1).map((r) => r.bytesRead)) / 2 ** 20, f16MiB: bytes / 2 ** 20, decodeThreads: threads,
                cachedAfterEvict: coldRuns.every((r) => r.cachedAfterEvict != null)
                    ? `${(Math.max(...coldRuns.map((r) => r.cachedAfterEvict!)) / 2 ** 20).toFixed(1)} of ${(coldRuns[0]!.fileBytes / 2 ** 20).toFixed(1)} MiB` : "?",
                diskMBps: rates.diskBytesPerMs / 1e3, decodeMBps: rates.decodeF16BytesPerMs / 1e3, prefillTokPerS: rates.prefillTokensPerMs * 1e3,
                chunkChoice: `disk ${side("disk").length} (${sum(side("disk"), "diskMs").toFixed(0)} ms) + recompute ${side("recompute").length} ` +
                    `(${sum(side("recompute"), "recomputeMs").toFixed(0)} ms); a chunk: disk ${plan[0]!.diskMs.toFixed(1)} / recompute ${plan[0]!.recomputeMs.toFixed(1)} ms`,
                ttftRuns: row.ttftRuns, size
            });
        }
        rows.push(row);
        if (a.out)
            await appendFile(`${a.out}.jsonl`, JSON.stringify(row) + "\n");
    }
    if (a.check === true && size === sizes[0] && !pastDeadline())
        await checkLogits(prompt);
    // Each cold row against the warm row of the same strategy and ratio in this run: the RAM tier's (pinned host)
    // if it ran, else the resident tier's.
    for (const coldRow of coldRows.filter((r) => r.size === size && Number.isNaN(r.warmMs))) {
        const base = String(coldRow.strategy).replace(/ cold \(disk L\d+\)$/, "");
        const warm = rows.find((r) => r.context === coldRow.context && r.strategy === base) ??
            rows.find((r) => r.context === coldRow.context && r.strategy === `${base} (resident)`);
        if (warm != null)
            Object.assign(coldRow, {warmStrategy: warm.strategy, warmMs: warm.ttftMs, xWarm: Number(coldRow.ttftMs) / Number(warm.ttftMs)});
        if (a.out)
            await appendFile(`${a.out}.jsonl`, JSON.stringify({kind: "cold", ...coldRow}) + "\n");
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
if (coldRows.length > 0) {
    // Issue #13's GPU target: cold within 1.5x of warm, or the controller chose recompute and the sources say so.
    const coldHead = ["card", "strategy", "context tokens", "TTFT ms", "x warm", "warm row", "warm ms", "ratio to full", "load ms",
        "chunk sources per run (w = warm-up)", "disk MiB read", "f16 MiB", "decode threads", "page cache after evict",
        "disk MB/s", "decode MB/s", "prefill tok/s", "controller's plan now (est.)", "TTFT runs"];
    const coldKeys = ["card", "strategy", "context", "ttftMs", "xWarm", "warmStrategy", "warmMs", "ratioToFull", "loadMs", "sources", "readMiB",
        "f16MiB", "decodeThreads", "cachedAfterEvict", "diskMBps", "decodeMBps", "prefillTokPerS", "chunkChoice", "ttftRuns"];
    const coldFmt = (v: string | number, k: string) => typeof v === "string" ? v : Number.isNaN(v) ? "-"
        : k === "xWarm" || k === "ratioToFull" ? v.toFixed(3) : k === "context" || k === "decodeThreads" || k === "prefillTokPerS" ? String(Math.round(v)) : v.toFixed(1);
    lines.push("", `| ${coldHead.join(" | ")} |`, `|${coldHead.map(() => "---").join("|")}|`,
        ...coldRows.map((r) => `| ${coldKeys.map((k) => coldFmt(r[k]!, k)).join(" | ")} |`));
    lines.push("", `cold rows: chunk KVs from the disk tier only (no RAM tier, no resident tier), stored in the KV codec's container at ` +
        `the row's level under ${dataDir} (${await pageCache.filesystemOf(dataDir)}); before every run (warm-up included) the chunk files were ` +
        (pageCacheProblem == null ? "written back and evicted from the page cache (dd iflag=nocache; the model's pages stay)"
            : `NOT evicted (${pageCacheProblem}): they were read from the page cache`) +
        `; "page cache after evict" is the most fincore found still cached over the runs. The product's controller planned each ` +
        "question's chunks between the disk (read + decode on the decode threads) and recomputing them alone (KvController.plan: " +
        "on a GPU both sides run at once, so it splits them to shorten the slower side; on a CPU each chunk takes its cheaper side); " +
        "the rates are the ones it measured by the end of the row, and the last column is its plan for this prompt with them " +
        "(estimated ms per side, and one chunk's estimates). " +
        "Target (issue #13, GPU, 8B shape, 8k): x warm <= 1.5, or the sources show recompute.");
}
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
await blend.close();
pageCache.close();
for (const cold of coldSessions.values())
    await cold.blend.close();
await rm(dataDir, {recursive: true, force: true});
await context.dispose();
await model.dispose();
await llama.dispose();
