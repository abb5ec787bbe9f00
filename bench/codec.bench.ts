// The KV codec against llama.cpp's own KV types: size and next-token quality on stories260K and on Weft's answer model,
// speed at an 8B shape.
//   npm run bench -- codec [--model stories|answers|both] [--span N] [--threads N] [--shape "layers tokens width"]
//                          [--prompts N] [--chunks N] [--seed S] [--modes MASK] [--json]
//
// Quality on stories260K: for each of eight chunks (the eight short stories below, rotated: about 520 tokens each,
// above the chunker's 384-token target), the KV of all but its last token is made in f16, then the last token and
// a greedy f16 continuation of --span tokens are teacher-forced; every row's next-token distributions at those
// positions are compared with f16's (mean KL(f16 || row) in millinats). Every row loads the f16 KV after a round
// trip through its format (the continuation's own KV stays f16): Weft's levels through the codec, q8_0 and q4_0
// through llama.cpp's block formats applied to the rows (llama.cpp itself refuses those KV types for this model's
// head size of 8). Flash attention on for all.
// Quality on the answer model (test/fixtures/models/weft-answers.gguf, when it exists): held-out RAG prompts of the
// answer corpus (--prompts per question kind, --chunks sources each, seed --seed) built by Weft's prompt builder; the
// "chunk" is the prompt up to the end of its last source, and the teacher-forced positions are the rest: the question,
// "Answer:" and the gold answer with its citation (each position's distribution over the next token, the last one
// predicting end of text). Weft's levels and the block formats round-trip the chunk's f16 KV as above; the llama.cpp
// q8_0 / q4_0 rows are llama.cpp's own quantized KV caches (node-llama-cpp's experimentalKvCacheKeyType /
// ValueType): the whole context, chunk and continuation, is computed in that cache type, as a user of the option
// gets, and is compared with f16 computed the same way (prefilled, not loaded). KL is the mean over prompts of each
// prompt's mean over its positions.
// Speed: stories260K is 5 layers of 64 wide, too small to time, so encode/decode MB/s (f16 bytes) are measured on a
// synthetic chunk KV of --shape (default 32 layers, 512 tokens, 1024 wide: Llama 3 8B's per-token K/V layout) with
// --threads threads; see bench/kv-synthetic.ts for how it is made.
import os from "node:os";
import path from "node:path";
import {readFile, writeFile} from "node:fs/promises";
import {fileURLToPath} from "node:url";
import {getLlama, LlamaLogLevel, type Llama, type LlamaContext, type LlamaContextOptions, type LlamaContextSequence, type LlamaModel, type Token} from "node-llama-cpp";
import {isTransposed, type KvBody} from "../main/engine/kv/kv-blob.js";
import {parseSeqStateFile, serializeSeqStateFile} from "../test/helpers/seq-state-file.js";
import {decodeKvBody, encodeKvBody, kvCodecDefaultLevel, kvCodecLevelCount} from "../main/engine/kv/kv-codec.js";
import {kvCodecDecode, kvCodecEncode} from "../main/engine/native/native-addon.js";
import {ropeParamsFromGguf, type RopeParams} from "../main/engine/kv/rope-params.js";
import {buildPrompt} from "../main/engine/prompt.js";
import {makeQuestionSet} from "../test/fixtures/answer-corpus.js";
import {answerModelMissing, answerModelPath} from "../test/fixtures/answer-model.js";
import {exampleTokens} from "../test/fixtures/answer-tokens.js";
import {ggmlQuantRoundTrip} from "../test/helpers/ggml-quant.js";
import {klDivergence} from "../test/helpers/logits.js";
import {benchArgs, loadNote, log, Report, withTempDir} from "./harness.js";
import {codecTuning, codecTuningFlags} from "./codec-tuning.js";
import {syntheticKv} from "./kv-synthetic.js";
import {stories} from "./stories.js";

const args = benchArgs({
    /** Which models' KL tables: stories (stories260K, with the speed columns), answers (the answer model), both. */
    model: {type: "string", default: "both"},
    span: {type: "string", default: "16"},
    threads: {type: "string", default: "2"},
    shape: {type: "string", default: "32 512 1024"},
    modes: {type: "string", default: "7"},
    /** Answer model: held-out prompts per question kind (three kinds), sources per prompt, corpus seed. */
    prompts: {type: "string", default: "4"},
    chunks: {type: "string", default: "6"},
    seed: {type: "string", default: "7"},
    /** Experiment: code keys as stored (after RoPE), not un-rotated. */
    rotated: {type: "boolean", default: false},
    /** Experiment: the encoder's tuning (bench/codec-tuning.ts). */
    ...codecTuningFlags,
    /** Sweeps: which levels to measure (comma list; default all); --no-kv-types skips llama.cpp's KV-cache rows. */
    levels: {type: "string", default: ""},
    "no-kv-types": {type: "boolean", default: false}
});
const span = Number.parseInt(args.span, 10);
const threads = Number.parseInt(args.threads, 10);
const modeMask = Number.parseInt(args.modes, 10);
const promptsPerKind = Number.parseInt(args.prompts, 10);
const chunkCount = Number.parseInt(args.chunks, 10);
const seed = Number.parseInt(args.seed, 10);
if (!["stories", "answers", "both"].includes(args.model))
    throw new Error(`--model is stories, answers or both, not ${JSON.stringify(args.model)}`);
if (!(threads >= 1) || !(promptsPerKind >= 1) || !(chunkCount >= 2))
    throw new Error(`--threads, --prompts and --chunks (>= 2) must be positive integers, got ${args.threads}, ${args.prompts}, ${args.chunks}`);
const tuning = codecTuning(args);
const levels = args.levels === "" ? null : args.levels.split(",").map((n) => Number.parseInt(n, 10));
const measureLevel = (level: number) => levels == null || levels.includes(level);
const [shapeLayers, shapeTokens, shapeWidth] = args.shape.split(/\s+/).map((n) => Number.parseInt(n, 10)) as [number, number, number];
const loadAtStart = os.loadavg()[0]!;
const modelPath = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "shared", "models", "stories260K.gguf");
const fingerprint = "00112233445566778899aabbccddeeff";

const klColumns = [
    {key: "bitsPerValue", header: "bits/value", digits: 2},
    {key: "ratioToF16", header: "x smaller", digits: 2},
    {key: "klMnat", header: "KL mnat", digits: 3}
];
const report = new Report("codec", [
    ...klColumns,
    {key: "encodeMBps", header: "encode MB/s", digits: 0},
    {key: "decodeMBps", header: "decode MB/s", digits: 0}
], args.json);
const answerReport = new Report("codec", [...klColumns, {key: "klAnswerMnat", header: "KL answer tokens mnat", digits: 3}], args.json);

/** The chunk (prefix) whose KV is round-tripped, then the teacher-forced tokens; KL counts positions from `from` on. */
type Case = {prefix: Token[], forced: Token[]};

/** One model's quality setup: its f16 context, cases, the chunks' f16 KV and the reference distributions. */
type KlSetup = {
    model: LlamaModel,
    vocab: number,
    f16: LlamaContext,
    contextOptions: LlamaContextOptions,
    dir: string,
    cases: Case[],
    bodies: KvBody[],
    /** f16 with the chunk's KV loaded from its state (the codec rows' path). */
    reference: Float64Array[][],
    /** f16 with the chunk prefilled (the llama.cpp KV type rows' path). */
    direct: Float64Array[][],
    rope: RopeParams | null
};

const sequences = new Map<LlamaContext, LlamaContextSequence>();
function sequenceOf(context: LlamaContext): LlamaContextSequence {
    if (!sequences.has(context))
        sequences.set(context, context.getSequence());
    return sequences.get(context)!;
}

async function distributions(context: LlamaContext, vocab: number, c: Case, load?: KvBody, dir?: string): Promise<Float64Array[]> {
    const sequence = sequenceOf(context);
    await sequence.clearHistory();
    if (load != null) {
        const file = path.join(dir!, "load.bin");
        await writeFile(file, serializeSeqStateFile(Int32Array.from(c.prefix), load));
        await sequence.loadStateFromFile(file, {acceptRisk: true});
    } else {
        await sequence.evaluateWithoutGeneratingNewTokens(c.prefix);
    }
    const results = await sequence.controlledEvaluate(c.forced.map((token) => [token, {generateNext: {logits: true}}]));
    return results.map((result) => {
        const out = new Float64Array(vocab);
        for (const [token, logit] of result!.next!.logits!)
            out[token] = logit;
        return out;
    });
}

/** The f16 KV of `prefix` as a state body, the sequence left holding it. */
async function prefixBody(context: LlamaContext, prefix: Token[], dir: string): Promise<KvBody> {
    const sequence = sequenceOf(context);
    await sequence.clearHistory();
    await sequence.evaluateWithoutGeneratingNewTokens(prefix);
    const file = path.join(dir, "state.bin");
    await sequence.saveStateToFile(file);
    return parseSeqStateFile(await readFile(file)).body;
}

/** Each case's mean KL(reference || other) in millinats, over its positions from `from[i]` on. */
function caseKl(reference: Float64Array[][], other: Float64Array[][], from?: number[]): number[] {
    return reference.map((positions, i) => {
        let sum = 0, n = 0;
        for (let j = from?.[i] ?? 0; j < positions.length; j++) {
            sum += klDivergence(positions[j]!, other[i]![j]!);
            n++;
        }
        return (sum / n) * 1000;
    });
}

/** The mean over cases of {@link caseKl}. */
function meanKl(reference: Float64Array[][], other: Float64Array[][], from?: number[]): number {
    const kls = caseKl(reference, other, from);
    return kls.reduce((sum, kl) => sum + kl, 0) / kls.length;
}

/** A row's next-token distributions for every case, with the f16 ones it is compared with. */
type Measured = {reference: Float64Array[][], rows: Float64Array[][]};

/** K and V values in a body (what bits/value and the f16 size count). */
function valueCount(body: KvBody): number {
    return body.layers.reduce((sum, layer) => sum + (layer.k.rows.byteLength + (isTransposed(layer.v) ? layer.v.data : layer.v.rows).byteLength) / 2, 0);
}

async function klSetup(model: LlamaModel, contextOptions: LlamaContextOptions, dir: string, cases: Case[], bodies: KvBody[], f16: LlamaContext): Promise<KlSetup> {
    const vocab = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
    const reference: Float64Array[][] = [];
    for (const [i, c] of cases.entries())
        reference.push(await distributions(f16, vocab, c, bodies[i], dir));
    const direct: Float64Array[][] = [];
    for (const c of cases)
        direct.push(await distributions(f16, vocab, c));
    log(`${path.basename(model.filename ?? "model")}: f16 loaded vs prefilled: KL ${meanKl(reference, direct).toFixed(4)} mnat (the loading path itself)`);
    return {model, vocab, f16, contextOptions, dir, cases, bodies, reference, direct, rope: ropeParamsFromGguf(model.fileInfo)};
}

/** Every case with its chunk's KV replaced by `transform(body)`, against f16 with the chunk's KV loaded. */
async function roundTrip(setup: KlSetup, transform: (body: KvBody) => Promise<KvBody> | KvBody): Promise<Measured> {
    const rows: Float64Array[][] = [];
    for (const [i, c] of setup.cases.entries())
        rows.push(await distributions(setup.f16, setup.vocab, c, await transform(setup.bodies[i]!), setup.dir));
    return {reference: setup.reference, rows};
}

/** llama.cpp's block formats applied to the chunk's f16 KV rows (test/helpers/ggml-quant.ts), each row's 32 values one block. */
async function blockFormat(setup: KlSetup, name: "q8_0" | "q4_0"): Promise<Measured> {
    return roundTrip(setup, (body) => ggmlQuantRoundTrip(body, name));
}

/** A Weft level's round trip through the codec: size of the containers and the distributions. */
async function codecLevel(setup: KlSetup, level: number): Promise<{bitsPerValue: number, ratioToF16: number, measured: Measured}> {
    let compressed = 0, values = 0;
    const measured = await roundTrip(setup, async (body) => {
        const file = await encodeKvBody(body, {level, fingerprint, threads, modeMask, rope: args.rotated ? null : setup.rope, tuning});
        compressed += file.byteLength;
        values += valueCount(body);
        return (await decodeKvBody(file, {fingerprint, threads})).body;
    });
    return {bitsPerValue: compressed * 8 / values, ratioToF16: values * 2 / compressed, measured};
}

/**
 * llama.cpp's own quantized KV cache (K and V of `type`) for the whole context; KL from f16 computed the same way.
 * `rotation: false` turns off llama.cpp's Hadamard rotation of quantized K and V (LLAMA_ATTN_ROT_DISABLE, read when
 * the context's cache is made).
 */
async function kvType(setup: KlSetup, type: "Q8_0" | "Q4_0", rotation: boolean): Promise<Measured> {
    const preset = process.env.LLAMA_ATTN_ROT_DISABLE;
    if (!rotation)
        process.env.LLAMA_ATTN_ROT_DISABLE = "1";
    let context: LlamaContext;
    try {
        context = await setup.model.createContext({...setup.contextOptions, experimentalKvCacheKeyType: type, experimentalKvCacheValueType: type});
    } finally {
        if (preset === undefined)
            delete process.env.LLAMA_ATTN_ROT_DISABLE;
        else
            process.env.LLAMA_ATTN_ROT_DISABLE = preset;
    }
    try {
        const rows: Float64Array[][] = [];
        for (const c of setup.cases)
            rows.push(await distributions(context, setup.vocab, c));
        return {reference: setup.direct, rows};
    } finally {
        await context.dispose();
    }
}

const levelName = (level: number) => `weft L${level}${level === kvCodecDefaultLevel ? " (default)" : ""}${args.rotated ? " K rotated" : ""}`;
const levelCodec = (level: number) => `weft-L${level}${args.rotated ? "-rotated" : ""}`;

/** stories260K: the KL table with the speed columns (synthetic 8B-shape KV). */
async function storiesTable(llama: Llama, dir: string): Promise<void> {
    const model: LlamaModel = await llama.loadModel({modelPath});
    const contextOptions = {contextSize: 1024, threads: 1, sequences: 1, flashAttention: true} as const;
    const f16 = await model.createContext(contextOptions);

    // Cases: each story's prefix KV (all but the last token) and its f16 greedy continuation, teacher-forced.
    const cases: Case[] = [];
    const bodies: KvBody[] = [];
    for (let rotation = 0; rotation < stories.length; rotation++) {
        const text = [...stories.slice(rotation), ...stories.slice(0, rotation)].join("\n");
        const tokens = model.tokenize(text, true);
        bodies.push(await prefixBody(f16, tokens.slice(0, -1), dir));
        const sequence = sequenceOf(f16);
        const continuation: Token[] = [];
        let next = tokens.at(-1)!;
        for (let i = 0; i < span; i++) {
            const [result] = await sequence.controlledEvaluate([[next, {generateNext: {token: true}}]]);
            next = result!.next!.token!;
            continuation.push(next);
        }
        cases.push({prefix: tokens.slice(0, -1), forced: [tokens.at(-1)!, ...continuation.slice(0, -1)]});
    }
    const setup = await klSetup(model, contextOptions, dir, cases, bodies, f16);
    report.add({row: "f16", model: "stories260K", codec: "f16", bitsPerValue: 16, ratioToF16: 1, klMnat: 0, encodeMBps: null, decodeMBps: null});

    // llama.cpp refuses a q8_0/q4_0 KV cache for stories260K (head size 8, block 32), so their rows apply the block
    // formats to the same f16 KV rows.
    for (const [name, bits] of [["q8_0", 8.5], ["q4_0", 4.5]] as const) {
        const {reference, rows} = await blockFormat(setup, name);
        report.add({row: `llama.cpp ${name}`, model: "stories260K", codec: name, bitsPerValue: bits, ratioToF16: 16 / bits, klMnat: meanKl(reference, rows), encodeMBps: null, decodeMBps: null});
    }

    const synthetic = syntheticKv(shapeLayers, shapeTokens, shapeWidth);
    const syntheticBytes = synthetic.reduce((sum, layer) => sum + layer.k.byteLength + layer.v.byteLength, 0);
    for (let level = 0; level < kvCodecLevelCount; level++) {
        if (!measureLevel(level))
            continue;
        const quality = await codecLevel(setup, level);
        const start = performance.now();
        // The synthetic KV has no positions: RoPE un-rotation is timed with Llama 3 8B's parameters (128-wide heads).
        const encoded = await kvCodecEncode({
            nTokens: shapeTokens, vTrans: false, level, fingerprint: Buffer.from(fingerprint, "hex"), layers: synthetic, threads, modeMask, tuning,
            rope: args.rotated ? undefined : {kind: 2, nRot: 128, headDim: 128, firstPos: 0, freqBase: 500000, freqScale: 1, freqFactors: null}
        });
        const encodeSeconds = (performance.now() - start) / 1000;
        let decodeSeconds = Infinity;
        for (let r = 0; r < 5; r++) {
            const t0 = performance.now();
            const result = await kvCodecDecode(encoded.bytes, {threads, maxTokens: shapeTokens});
            decodeSeconds = Math.min(decodeSeconds, (performance.now() - t0) / 1000);
            if (!result.ok)
                throw new Error(result.detail);
        }
        log(`level ${level}: synthetic ${(syntheticBytes / encoded.bytes.byteLength).toFixed(2)}x smaller, modes ${encoded.modes.join("/")} (direct/prev/anchor)`);
        report.add({
            row: levelName(level), model: "stories260K", codec: levelCodec(level),
            bitsPerValue: quality.bitsPerValue, ratioToF16: quality.ratioToF16, klMnat: meanKl(quality.measured.reference, quality.measured.rows),
            encodeMBps: syntheticBytes / 1e6 / encodeSeconds, decodeMBps: syntheticBytes / 1e6 / decodeSeconds
        });
    }
    report.note(`KL on stories260K (${cases.length} chunks of ${Math.min(...cases.map((c) => c.prefix.length))}-${Math.max(...cases.map((c) => c.prefix.length))} tokens, ${span} positions each, CPU); MB/s of f16 bytes on a synthetic ${shapeLayers}x${shapeTokens}x${shapeWidth} chunk KV (K and V) with ${threads} threads; ${loadNote(loadAtStart)}`);
    report.note("Weft bits/value include the container (header, meta, per-channel parameters); llama.cpp's are its block formats' nominal sizes.");
    await f16.dispose();
    await model.dispose();
}

/** The answer model: KL on held-out RAG prompts, llama.cpp's own q8_0 / q4_0 KV caches beside Weft's levels. */
async function answersTable(llama: Llama, dir: string): Promise<void> {
    const model = await llama.loadModel({modelPath: answerModelPath});
    const contextOptions = {contextSize: model.trainContextSize, threads, sequences: 1, flashAttention: true} as const;
    const f16 = await model.createContext(contextOptions);

    // Cases: the prompt up to the end of its last source is the chunk; the question, "Answer:" and the gold answer
    // with its citation are teacher-forced (the last position predicts end of text).
    const cases: Case[] = [];
    const bodies: KvBody[] = [];
    const answerFrom: number[] = [];
    let skipped = 0;
    for (const example of makeQuestionSet(seed, "held-out", promptsPerKind, chunkCount)) {
        const encoded = exampleTokens(model, example);
        if (encoded == null || encoded.tokens.length > contextOptions.contextSize) {
            skipped++;
            continue;
        }
        const prompt = buildPrompt(model, example.question, example.chunks.map((chunk, index) => ({n: index + 1, path: chunk.path, text: chunk.text})), false);
        const chunkEnd = prompt.tokens.length - prompt.segments.at(-1)!.tokens.length;
        const prefix = encoded.tokens.slice(0, chunkEnd);
        bodies.push(await prefixBody(f16, prefix, dir));
        cases.push({prefix, forced: encoded.tokens.slice(chunkEnd, -1)});
        // Position j predicts forced[j + 1] (or end of text): the answer's first token is predicted at answerStart - 1.
        answerFrom.push(encoded.answerStart - 1 - chunkEnd);
    }
    if (cases.length === 0)
        throw new Error("no answer-corpus prompt fits the answer model's context");
    const setup = await klSetup(model, contextOptions, dir, cases, bodies, f16);
    const add = (row: string, codec: string, bitsPerValue: number, measured: Measured | null) => {
        const perPrompt = measured == null ? cases.map(() => 0) : caseKl(measured.reference, measured.rows);
        const answerKl = measured == null ? 0 : meanKl(measured.reference, measured.rows, answerFrom);
        const sorted = [...perPrompt].sort((a, b) => a - b);
        log(`${row}: per prompt KL min ${sorted[0]!.toFixed(3)}, median ${sorted[sorted.length >> 1]!.toFixed(3)}, max ${sorted.at(-1)!.toFixed(3)} mnat`);
        answerReport.add({
            row, model: "weft-answers", codec, bitsPerValue, ratioToF16: 16 / bitsPerValue, klMnat: perPrompt.reduce((sum, kl) => sum + kl, 0) / perPrompt.length,
            klAnswerMnat: answerKl, encodeMBps: null, decodeMBps: null
        });
        return perPrompt;
    };
    add("f16", "f16", 16, null);
    let q4PerPrompt: number[] | null = null;
    const kvTypes = [["q8_0", "Q8_0", 8.5, true], ["q4_0", "Q4_0", 4.5, true], ["q4_0", "Q4_0", 4.5, false]] as const;
    for (const [name, type, bits, rotation] of args["no-kv-types"] ? [] : kvTypes) {
        const row = `llama.cpp ${name} KV cache${rotation ? "" : ", rotation off"}`;
        try {
            const perPrompt = add(row, `${name}${rotation ? "" : "-norot"}`, bits, await kvType(setup, type, rotation));
            if (name === "q4_0" && rotation)
                q4PerPrompt = perPrompt;
        } catch (error) {
            log(`${row}: ${String(error)}`);
            answerReport.note(`${row}: failed: ${String(error)}`);
        }
    }
    for (const [name, bits] of [["q8_0", 8.5], ["q4_0", 4.5]] as const)
        add(`${name} block format (chunk only)`, `${name}-block`, bits, await blockFormat(setup, name));
    for (let level = 0; level < kvCodecLevelCount; level++) {
        if (!measureLevel(level))
            continue;
        const quality = await codecLevel(setup, level);
        const perPrompt = add(levelName(level), levelCodec(level), quality.bitsPerValue, quality.measured);
        if (q4PerPrompt != null)
            log(`${levelName(level)}: KL at or below llama.cpp q4_0's on ${perPrompt.filter((kl, i) => kl <= q4PerPrompt![i]!).length} of ${perPrompt.length} prompts`);
    }
    const lengths = cases.map((c) => c.prefix.length);
    const positions = cases.map((c) => c.forced.length);
    answerReport.note(`KL on ${path.basename(answerModelPath)} (CPU, ${threads} threads, flash attention): ${cases.length} held-out prompts of the answer corpus (seed ${seed}, ${promptsPerKind} per question kind, ${chunkCount} sources each${skipped > 0 ? `, ${skipped} skipped` : ""}), chunks of ${Math.min(...lengths)}-${Math.max(...lengths)} tokens, ${Math.min(...positions)}-${Math.max(...positions)} teacher-forced positions after each (question, "Answer:", gold answer and citation; "KL answer tokens": the positions predicting the answer and end of text); mean over prompts of each prompt's mean; ${loadNote(loadAtStart)}`);
    answerReport.note("llama.cpp q8_0 / q4_0 KV cache: the whole context (chunk and continuation) in llama.cpp's own quantized cache (node-llama-cpp's experimentalKvCacheKeyType / ValueType), KL against f16 prefilled the same way; this llama.cpp rotates K and V with a Hadamard transform for quantized caches of head size 64 (rotation off: LLAMA_ATTN_ROT_DISABLE=1); block format: ggml's reference block quantizers (no rotation) applied to the chunk's f16 KV, continuation f16, like Weft's levels.");
    answerReport.note("Weft bits/value include the container (header, meta, per-channel parameters); llama.cpp's are its block formats' nominal sizes.");
    await f16.dispose();
    await model.dispose();
}

async function main(): Promise<void> {
    const llama = await getLlama({gpu: false, maxThreads: threads, logLevel: LlamaLogLevel.error});
    let answers = false;
    await withTempDir("weft-codec-bench-", async (dir) => {
        if (args.model !== "answers")
            await storiesTable(llama, dir);
        if (args.model !== "stories") {
            const missing = answerModelMissing();
            if (missing != null && args.model === "answers")
                throw new Error(missing);
            if (missing != null)
                log(`answer model table skipped: ${missing}`);
            else {
                await answersTable(llama, dir);
                answers = true;
            }
        }
    });
    if (args.model !== "answers")
        report.print();
    if (answers) {
        if (args.model !== "answers" && !args.json)
            console.log("");
        answerReport.print();
    }
}

await main();
