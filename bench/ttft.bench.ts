// Time to first token of each prompt-preparation strategy, on a generated model large enough that prefill dominates.
//   npm run bench -- ttft [--sizes 2048,4096,8192] [--runs 3] [--threads N] [--layers 8] [--chunk-tokens 512] [--json]
//                         [--drop-all-caches]
//
// A context of S tokens is [BOS][label][chunk]...[label][chunk][question], with chunks of about 500 tokens of made-up
// words (S/512 of them: a RAG top-k of 512-token chunks). Every chunk's KV is computed and cached first (ingest
// does that), so the blend strategies find it in the RAM tier, as a warm app would. TTFT is the time from an empty
// sequence to the first token's logits: prepare the prompt's KV, then evaluate the remaining tokens with logits on
// the last. Runs are interleaved across strategies; each cell is the median of --runs.
import {existsSync} from "node:fs";
import os from "node:os";
import path from "node:path";
import {getLlama, LlamaLogLevel, type LlamaContextSequence, type Token} from "node-llama-cpp";
import {type BlendSession, openBlendSession} from "../main/engine/blend/blend.js";
import {createModelContext} from "../main/engine/context-batch.js";
import {decodeBatchSize} from "../main/engine/native/native-addon.js";
import {defaultFocus, type FocusOptions, nameTokenTest} from "../main/engine/blend/focus.js";
import {inFocusOrder} from "../main/engine/blend/focus-order.js";
import {ChunkKvCache} from "../main/engine/kv/chunk-cache.js";
import {StoreFailures} from "../main/engine/kv/store-failures.js";
import {kvCodecDefaultLevel} from "../main/engine/kv/kv-codec.js";
import {prepareFull, preparePrefix, type PreparedPrompt} from "../main/engine/blend/prepare.js";
import {buildPrompt, type BuiltPrompt, firstSourceLead, type PromptSource} from "../main/engine/prompt.js";
import {ensureTinyLlama, fixturePresets, type TinyLlamaShape} from "../test/fixtures/make-tiny-models.js";
import {PageCacheTools} from "./page-cache.js";
import {benchArgs, formatCount, log, median, Report, seededRandom, Vocabulary, withTempDir} from "./harness.js";

const args = benchArgs({
    sizes: {type: "string", default: "2048,4096,8192"},
    runs: {type: "string", default: "3"},
    threads: {type: "string", default: process.env.WEFT_THREADS ?? "1"},
    "chunk-tokens": {type: "string", default: "512"},
    layers: {type: "string", default: "8"},
    /** As the app sets it (auto) unless given: on | off. */
    "flash-attention": {type: "string", default: "auto"},
    /** The cold row drops the whole page cache (root), the model's pages too, not only the chunk files'. */
    "drop-all-caches": {type: "boolean", default: false}
});
const sizes = args.sizes.split(",").map((value) => Number.parseInt(value, 10));
const runs = Number.parseInt(args.runs, 10);
const threads = Number.parseInt(args.threads, 10);
const chunkTokens = Number.parseInt(args["chunk-tokens"], 10);
const layers = Number.parseInt(args.layers, 10);
const flashAttentionArg = args["flash-attention"];
if (!["auto", "on", "off"].includes(flashAttentionArg))
    throw new Error("--flash-attention must be auto, on or off");
if (sizes.some((size) => !(size >= 256)) || !(runs >= 1) || !(threads >= 1) || !(chunkTokens >= 16) || !(layers >= 2))
    throw new Error("--sizes must be integers >= 256; --runs, --threads, --chunk-tokens and --layers (>= 2) positive integers");

/**
 * bench-8x512's weights (same shape and seed, so the same tensors) with a 16k training context, so 8k prompts are
 * in range: llama.cpp and node-llama-cpp cap the context at the model's context_length. --layers makes it deeper
 * (each layer's tensors depend only on the seed and their name, so the first 8 layers stay bench-8x512's): hkvd's
 * selection pass runs about 1.3 of the layers over the whole prompt, so its share of a prefill shrinks with depth.
 */
const modelLabel = `bench-${layers}x512-16k`;
const modelShape: TinyLlamaShape = {...fixturePresets["bench-8x512"], layers, contextLength: 16384};

const ratio = 0.15;
/** The size the targets are judged at, and the targets (TTFT / full's TTFT at that size). */
const targetSize = 4096;
const targets: Record<string, number> = {naive: 1 / 8, [`chunk-head@${ratio}`]: 0.2, [`hkvd@${ratio}`]: 0.25};

/**
 * `cold`: the chunk KVs come from disk through the KV codec (a cache with no RAM tier, files stored at the codec's
 * default level) with the page cache dropped before the run, as after a restart.
 */
/**
 * `uncached`: no chunk KV cached anywhere (a question right after an ingest, before warming reached its chunks; a cache
 * that stores nothing): the blend computes every chunk alone first, or with `fallback` does what auto does
 * (uncachedFallback, given the full prefill's last time): a full prefill when computing them would be slower.
 */
type Variant = {
    name: string, strategy: "full" | "prefix" | "naive" | "chunk-head" | "hkvd", ratio: number, cold?: boolean, focus?: FocusOptions,
    uncached?: "computed" | "fallback"
};
/** The selection alone, without the chunk the question is about recomputed whole (focus.ts; before session 10). */
const noFocus: FocusOptions = {count: 0, continuations: false, hops: 0};
const variants: Variant[] = [
    {name: "full", strategy: "full", ratio: 0},
    {name: "prefix (cold)", strategy: "prefix", ratio: 0},
    {name: "naive", strategy: "naive", ratio: 0},
    {name: "naive cold (disk, codec)", strategy: "naive", ratio: 0, cold: true},
    {name: `chunk-head@${ratio} uncached, computed first`, strategy: "chunk-head", ratio, uncached: "computed"},
    {name: `chunk-head@${ratio} uncached, auto's choice`, strategy: "chunk-head", ratio, uncached: "fallback"},
    {name: `chunk-head@${ratio}`, strategy: "chunk-head", ratio},
    {name: `hkvd@${ratio}`, strategy: "hkvd", ratio},
    // The fused decode at ratio 0: only the selection's share (layers 0..1 of every token, labels, question).
    {name: "hkvd@0", strategy: "hkvd", ratio: 0},
    {name: `chunk-head@${ratio} no focus`, strategy: "chunk-head", ratio, focus: noFocus},
    {name: `hkvd@${ratio} no focus`, strategy: "hkvd", ratio, focus: noFocus},
    {name: "hkvd@0 no focus", strategy: "hkvd", ratio: 0, focus: noFocus}
];

type Timing = {totalMs: number, cpuMs: number, loadMs: number, selectMs: number, recomputeMs: number, questionMs: number, prepared: PreparedPrompt};


/** Evaluates `tokens` after what the sequence holds, with logits on the last one: the first token could be sampled. */
async function firstTokenLogits(sequence: LlamaContextSequence, tokens: Token[]): Promise<void> {
    const results = await sequence.controlledEvaluate([...tokens.slice(0, -1), [tokens.at(-1)!, {generateNext: {logits: true}}]]);
    if (results.at(-1)?.next?.logits == null)
        throw new Error("no logits for the last prompt token");
}

/** Chunks of made-up words filling about `size` prompt tokens: sentences are added while the chunk stays under its share. */
function makeSources(tokenize: (text: string) => Token[], size: number, seed: number): PromptSource[] {
    const random = seededRandom(seed);
    const vocab = new Vocabulary(random, 5000);
    const count = Math.max(1, Math.round(size / chunkTokens));
    // Room for BOS, the "[n] file.txt" labels (~8 tokens each) and the question.
    const perChunk = Math.floor((size - 48 - 10 * count) / count);
    return Array.from({length: count}, (_, index) => {
        let text = "";
        let tokens = 0;
        for (;;) {
            const sentence = vocab.sentence(6, 18);
            const next = text === "" ? sentence : `${text} ${sentence}`;
            const nextTokens = tokenize(next).length;
            if (nextTokens > perChunk) {
                if (tokens > 0)
                    break;
                continue;
            }
            text = next;
            tokens = nextTokens;
        }
        return {n: index + 1, path: `doc-${index + 1}.md`, text};
    });
}

let pageCacheNote = args["drop-all-caches"] ? "dropped whole before each cold run (/proc/sys/vm/drop_caches; the model's pages too)"
    : "of the chunk files evicted before each cold run (dd iflag=nocache; the model stays in memory, as in a running app)";

/**
 * Evicts the cold cache's chunk files from the kernel's page cache (each file's pages, through dd's nocache flag), so
 * they are read from disk; `--drop-all-caches` drops the whole page cache instead (root), the model's pages with it.
 * Where neither works, the cold rows read from the page cache and the note says so. The helper shell starts before the
 * model loads (page-cache.ts says why).
 */
const pageCache = PageCacheTools.start();
async function dropPageCache(coldDir: string): Promise<void> {
    const problem = args["drop-all-caches"] ? await pageCache.dropAll() : await pageCache.evict(coldDir);
    if (problem != null)
        pageCacheNote = `NOT dropped (${problem}): the cold rows read through the page cache`;
}

function cpuModel(): string {
    return os.cpus()[0]?.model.trim() ?? "unknown CPU";
}

await withTempDir("ttft", async (dir) => {
    const loadAtStart = os.loadavg()[0]!;
    const fixture = await ensureTinyLlama(modelLabel, modelShape);
    if (fixture.written)
        log(`wrote ${fixture.path} (${(fixture.bytes / 2 ** 20).toFixed(0)} MiB)`);
    const modelPath = fixture.path;
    if (!existsSync(modelPath))
        throw new Error(`fixture model missing: ${modelPath}`);

    const llama = await getLlama({gpu: false, maxThreads: threads, build: "never", logLevel: LlamaLogLevel.error});
    const model = await llama.loadModel({modelPath});
    const contextSize = Math.max(...sizes) + 64;
    // As the app creates it (context-batch.ts): node-llama-cpp's 512 tokens per decode, the ubatch of Weft's own decodes
    // where RAM has room, and the flash attention setting.
    const context = await createModelContext(llama, model, {
        contextSize, threads, ...(flashAttentionArg !== "auto" ? {flashAttention: flashAttentionArg === "on"} : {})
    });
    const sequence = context.getSequence();
    // The app's budgets (engine.ts): a 1 GiB RAM tier keeps every chunk of these contexts in RAM.
    const cache = await ChunkKvCache.open({dataDir: path.join(dir, "data"), ramBudgetBytes: 1024 ** 3, diskBudgetBytes: 8 * 1024 ** 3});
    const opened = await openBlendSession({llama, model, context, sequence, modelPath, cache, threads});
    if (!opened.available)
        throw new Error(`blend path unavailable: ${opened.reason}`);
    const blend: BlendSession = opened.value;
    // The cold rows' session: the same model and sequence over a cache that keeps nothing in RAM and stores the codec.
    const coldCache = await ChunkKvCache.open({
        dataDir: path.join(dir, "data-cold"), ramBudgetBytes: 0, diskBudgetBytes: 8 * 1024 ** 3, codec: {level: kvCodecDefaultLevel, threads}
    });
    const coldOpened = await openBlendSession({llama, model, context, sequence, modelPath, cache: coldCache, threads});
    if (!coldOpened.available)
        throw new Error(`blend path unavailable: ${coldOpened.reason}`);
    const coldBlend: BlendSession = coldOpened.value;
    const coldSources = new Map<string, number>();
    // The uncached rows' session: a cache that keeps nothing, so every run finds no chunk KV (its refusals are expected).
    const uncachedCache = await ChunkKvCache.open({dataDir: path.join(dir, "data-uncached"), ramBudgetBytes: 0, diskBudgetBytes: 0});
    const uncachedOpened = await openBlendSession({llama, model, context, sequence, modelPath, cache: uncachedCache, threads,
        failures: new StoreFailures(() => {})});
    if (!uncachedOpened.available)
        throw new Error(`blend path unavailable: ${uncachedOpened.reason}`);
    const uncachedBlend: BlendSession = uncachedOpened.value;
    log(`model ${path.basename(modelPath)}, context ${context.contextSize} tokens, batch ${context.batchSize}, ` +
        `flash attention ${context.flashAttention} (${blend.flashAttention ? "on" : "off"}), threads ${threads}`);

    const report = new Report("ttft", [
        {key: "tokens", header: "tokens"},
        {key: "chunks", header: "chunks"},
        {key: "strategy", header: "strategy"},
        {key: "ttftMs", header: "TTFT ms", digits: 0},
        {key: "vsFull", header: "x full", digits: 3},
        {key: "cpuMs", header: "CPU ms", digits: 0},
        {key: "cpuVsFull", header: "CPU x full", digits: 3},
        {key: "loadMs", header: "load ms", digits: 0},
        {key: "selectMs", header: "select ms", digits: 0},
        {key: "recomputeMs", header: "recompute ms", digits: 0},
        {key: "questionMs", header: "question ms", digits: 0},
        {key: "otherMs", header: "other ms", digits: 0},
        {key: "recomputed", header: "recomputed"},
        {key: "fresh", header: "fresh"},
        {key: "kvMb", header: "KV MB", digits: 1},
        {key: "target", header: "target"},
        {key: "pass", header: "pass"}
    ], args.json);
    const verdicts: string[] = [];

    let lastFullMs: number | undefined;
    const uncachedChoices: string[] = [];
    async function measure(variant: Variant, prompt: BuiltPrompt): Promise<Timing> {
        if (variant.strategy === "prefix")
            await sequence.clearHistory(); // cold: nothing of this prompt in the sequence, so prefix == full
        if (variant.cold === true)
            await dropPageCache(path.join(dir, "data-cold"));
        const cpuAtStart = process.cpuUsage();
        const startedAt = performance.now();
        const prepared = variant.strategy === "full" ? await prepareFull(sequence, prompt.tokens)
            : variant.strategy === "prefix" ? await preparePrefix(sequence, prompt.tokens)
                : await (variant.cold === true ? coldBlend : variant.uncached != null ? uncachedBlend : blend).prepare(prompt, variant.strategy, variant.ratio,
                    {...(variant.focus != null ? {focus: variant.focus} : {}), uncachedFallback: variant.uncached === "fallback",
                        ...(variant.uncached === "fallback" && lastFullMs != null ? {fullPrefillMs: lastFullMs} : {})});
        if (variant.cold === true)
            for (const chunk of prepared.chunkKv ?? [])
                coldSources.set(chunk.kvSource, (coldSources.get(chunk.kvSource) ?? 0) + 1);
        const questionStartedAt = performance.now();
        await firstTokenLogits(sequence, prepared.tokensToEvaluate);
        const endedAt = performance.now();
        const cpu = process.cpuUsage(cpuAtStart);
        if (variant.strategy === "full")
            lastFullMs = endedAt - startedAt;
        if (variant.uncached === "fallback")
            uncachedChoices.push(prepared.strategy);
        return {
            totalMs: endedAt - startedAt, cpuMs: (cpu.user + cpu.system) / 1000, loadMs: prepared.kvLoadMs,
            selectMs: prepared.selectMs, recomputeMs: prepared.recomputeMs, questionMs: endedAt - questionStartedAt, prepared
        };
    }

    for (const [sizeIndex, size] of sizes.entries()) {
        const sources = makeSources((text) => model.tokenize(text), size, 1000 + sizeIndex);
        const random = seededRandom(77 + sizeIndex);
        const question = `${new Vocabulary(random, 200).sentence(8, 12).slice(0, -1)}?`;
        const prompt = buildPrompt(model, question, sources, false);
        if (prompt.tokens.length + 1 > context.contextSize)
            throw new Error(`a ${size}-token context built ${prompt.tokens.length} tokens, more than the context holds`);

        // Warm: every chunk's KV computed and cached (ingest's job), and one untimed pass of each strategy, which
        // also creates hkvd's private capture context for this prompt length.
        const warmStartedAt = performance.now();
        for (const segment of prompt.segments)
            if (segment.kind === "chunk") {
                await blend.chunkKv(segment.tokens);
                await coldBlend.chunkKv(segment.tokens);
                // and its lead version, for when it is the first source (background warming computes both)
                await blend.leadKv(firstSourceLead(model, segment.source!.path, false), segment.tokens);
            }
        const warmMs = performance.now() - warmStartedAt;
        // hkvd and chunk-head get the question's sources first, renumbered, as the chat service gives them (focus-order.ts)
        const isNameToken = nameTokenTest(model);
        const promptOf = (variant: Variant) => variant.strategy !== "hkvd" && variant.strategy !== "chunk-head" ? prompt
            : inFocusOrder(prompt, sources, variant.focus ?? defaultFocus, isNameToken, (moved) => buildPrompt(model, question, moved, false)).prompt;
        for (const variant of variants)
            await measure(variant, promptOf(variant));
        const tailTokens = prompt.segments.at(-1)!.tokens.length;
        log(`${size}: ${prompt.tokens.length} prompt tokens in ${sources.length} chunks, question ${tailTokens} tokens; ` +
            `chunk KVs computed in ${warmMs.toFixed(0)} ms`);

        const timings = new Map<string, Timing[]>(variants.map((variant) => [variant.name, []]));
        for (let run = 0; run < runs; run++)
            for (const variant of variants) {
                const timing = await measure(variant, promptOf(variant));
                timings.get(variant.name)!.push(timing);
                log(`${size} run ${run + 1} ${variant.name}: ${timing.totalMs.toFixed(0)} ms`);
            }

        const fullMs = median(timings.get("full")!.map((timing) => timing.totalMs));
        const fullCpuMs = median(timings.get("full")!.map((timing) => timing.cpuMs));
        const warmNaiveMs = median(timings.get("naive")!.map((timing) => timing.totalMs));
        const coldNaiveMs = median(timings.get("naive cold (disk, codec)")!.map((timing) => timing.totalMs));
        verdicts.push(`target naive cold at ${formatCount(size)}: TTFT ${coldNaiveMs.toFixed(0)} ms = ${(coldNaiveMs / warmNaiveMs).toFixed(3)} x warm ` +
            `(${warmNaiveMs.toFixed(0)} ms), needs <= 1.3 -> ${coldNaiveMs / warmNaiveMs <= 1.3 ? "PASS" : "FAIL"}`);
        for (const variant of variants) {
            const list = timings.get(variant.name)!;
            const prepared = list[0]!.prepared;
            const ttftMs = median(list.map((timing) => timing.totalMs));
            const cpuMs = median(list.map((timing) => timing.cpuMs));
            const parts = {
                loadMs: median(list.map((timing) => timing.loadMs)),
                selectMs: median(list.map((timing) => timing.selectMs)),
                recomputeMs: median(list.map((timing) => timing.recomputeMs)),
                questionMs: median(list.map((timing) => timing.questionMs))
            };
            const target = size === targetSize ? targets[variant.name] : undefined;
            const vsFull = ttftMs / fullMs;
            const cpuVsFull = cpuMs / fullCpuMs;
            report.add({
                row: `${formatCount(size)} ${variant.name}`,
                tokens: prompt.tokens.length,
                chunks: sources.length,
                strategy: variant.name,
                ttftMs,
                vsFull,
                cpuMs,
                cpuVsFull,
                ...parts,
                otherMs: Math.max(0, ttftMs - parts.loadMs - parts.selectMs - parts.recomputeMs - parts.questionMs),
                recomputed: prepared.recomputedTokens,
                fresh: prepared.freshTokens,
                kvMb: prepared.kvBytesLoaded / 2 ** 20,
                target: target != null ? `<= ${target === 1 / 8 ? "1/8" : String(target)} full` : null,
                pass: target != null ? vsFull <= target : null
            });
            if (target != null)
                verdicts.push(`target ${variant.name} at ${formatCount(size)}: TTFT ${ttftMs.toFixed(0)} ms = ${vsFull.toFixed(3)} x full ` +
                    `(${fullMs.toFixed(0)} ms), needs <= ${target.toFixed(3)} -> ${vsFull <= target ? "PASS" : "FAIL"}; by CPU time ` +
                    `${cpuVsFull.toFixed(3)} x full -> ${cpuVsFull <= target ? "PASS" : "FAIL"}`);
        }
    }
    if (!sizes.includes(targetSize))
        verdicts.push(`targets are judged at ${formatCount(targetSize)} tokens, which this run did not measure`);

    report.note("");
    report.note(`model ${path.basename(modelPath)} (${layers === 8 ? "bench-8x512 weights: " : ""}${layers} layers x 512, f16, llama-spm vocab; context_length 16384); ` +
        `${cpuModel()}, ${os.availableParallelism()} cores, threads ${threads}, flash attention ${blend.flashAttention ? "on" : "off"}` +
        `${flashAttentionArg === "auto" ? " (auto, as the app)" : ""}, batch ${context.batchSize} (Weft's own decodes: ${decodeBatchSize(context)}); median of ${runs} runs, interleaved.`);
    report.note("TTFT = prepare (clear or load KV, select, recompute) + evaluate the rest of the prompt with logits on its last token. " +
        "load = chunk KVs from the RAM tier + RoPE shift + header + splice into the sequence; question = evaluating the tail " +
        "(all of the prompt for full and prefix); other = the rest of prepare (clearing, bookkeeping).");
    report.note("CPU ms: the process's CPU time over the same span (user + system, all threads). With --threads 1 it is the work done, " +
        "whatever else the machine runs, so compare CPU x full when the load average was high; wall time is the TTFT a user sees.");
    report.note("prefix (cold): the sequence holds nothing of the prompt, so it evaluates everything, as full does.");
    report.note("uncached: no chunk KV in any tier (a cache that stores nothing): 'computed first' computes every chunk alone, " +
        "then blends (a strategy asked for by name); 'auto's choice' falls back to a full prefill when computing them alone at the " +
        `measured rate would take longer than (1 - ratio) of full's last time (BlendPrepareOptions.uncachedFallback); it chose: ${uncachedChoices.join(", ")}.`);
    report.note(`naive cold: chunk KVs read from disk through the KV codec at level ${kvCodecDefaultLevel} (no RAM tier), page cache ` +
        `${pageCacheNote}; where each chunk's KV came from over its runs (the controller may recompute): ` +
        `${[...coldSources].map(([source, count]) => `${source} ${count}`).join(", ")}. Target: cold within 1.3x of warm (naive).`);
    report.note(`hkvd runs as one fused decode (patch 0003): select ms is 0 and recompute ms holds selection and recompute; hkvd@0 ` +
        "(ratio 0) is the selection's share: layers 0..1 of every chunk token plus the labels and the question.");
    report.note(`load average (1 min) ${loadAtStart.toFixed(2)} at start, ${os.loadavg()[0]!.toFixed(2)} at end.`);
    for (const verdict of verdicts)
        report.note(verdict);
    report.print();

    await blend.close();
    await coldBlend.close();
    await uncachedBlend.close();
    await context.dispose();
    await model.dispose();
});
pageCache.close();
