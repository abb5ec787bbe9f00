// The KV codec against llama.cpp's own KV types: size and next-token quality on stories260K, speed at an 8B shape.
//   npm run bench -- codec [--span N] [--threads N] [--shape "layers tokens width"] [--modes MASK] [--json]
//
// Quality: for each of eight chunks (the eight short stories below, rotated: about 520 tokens each, above the chunker's
// 384-token target), the KV of all but its last token is made in f16, then the last token and
// a greedy f16 continuation of --span tokens are teacher-forced; every row's next-token distributions at those
// positions are compared with f16's (mean KL(f16 || row) in millinats). Every row loads the f16 KV after a round
// trip through its format (the continuation's own KV stays f16): Weft's levels through the codec, q8_0 and q4_0
// through llama.cpp's block formats applied to the rows (llama.cpp itself refuses those KV types for this model's
// head size of 8). Flash attention on for all.
// Speed: stories260K is 5 layers of 64 wide, too small to time, so encode/decode MB/s (f16 bytes) are measured on a
// synthetic chunk KV of --shape (default 32 layers, 512 tokens, 1024 wide: Llama 3 8B's per-token K/V layout) with
// --threads threads; see bench/kv-synthetic.ts for how it is made.
import os from "node:os";
import path from "node:path";
import {readFile} from "node:fs/promises";
import {fileURLToPath} from "node:url";
import {getLlama, LlamaLogLevel, type LlamaContext, type LlamaContextSequence, type LlamaModel, type Token} from "node-llama-cpp";
import type {KvBody} from "../main/engine/kv/kv-blob.js";
import {parseSeqStateFile, serializeSeqStateFile} from "../test/helpers/seq-state-file.js";
import {decodeKvBody, encodeKvBody, kvCodecDefaultLevel, kvCodecLevelCount} from "../main/engine/kv/kv-codec.js";
import {kvCodecDecode, kvCodecEncode} from "../main/engine/native/native-addon.js";
import {ropeParamsFromGguf} from "../main/engine/kv/rope-params.js";
import {ggmlQuantRoundTrip} from "../test/helpers/ggml-quant.js";
import {klDivergence} from "../test/helpers/logits.js";
import {benchArgs, loadNote, log, Report, withTempDir} from "./harness.js";
import {syntheticKv} from "./kv-synthetic.js";
import {stories} from "./stories.js";

const args = benchArgs({
    span: {type: "string", default: "16"},
    threads: {type: "string", default: "2"},
    shape: {type: "string", default: "32 512 1024"},
    modes: {type: "string", default: "7"},
    /** Experiment: code keys as stored (after RoPE), not un-rotated. */
    rotated: {type: "boolean", default: false},
    /** Experiment: exponent of a channel's own spread in its step (0: one step per tensor, 1: per-channel SNR). */
    beta: {type: "string", default: "0.5"},
    kfactor: {type: "string", default: "1"},
    vfactor: {type: "string", default: "1"}
});
const span = Number.parseInt(args.span, 10);
const threads = Number.parseInt(args.threads, 10);
const modeMask = Number.parseInt(args.modes, 10);
const tuning = {spreadExponent: Number(args.beta), kStepFactor: Number(args.kfactor), vStepFactor: Number(args.vfactor)};
const [shapeLayers, shapeTokens, shapeWidth] = args.shape.split(/\s+/).map((n) => Number.parseInt(n, 10)) as [number, number, number];
const loadAtStart = os.loadavg()[0]!;
const modelPath = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "shared", "models", "stories260K.gguf");
const fingerprint = "00112233445566778899aabbccddeeff";


const report = new Report("codec", [
    {key: "bitsPerValue", header: "bits/value", digits: 2},
    {key: "ratioToF16", header: "x smaller", digits: 2},
    {key: "klMnat", header: "KL mnat", digits: 3},
    {key: "encodeMBps", header: "encode MB/s", digits: 0},
    {key: "decodeMBps", header: "decode MB/s", digits: 0}
], args.json);

type Case = {prefix: Token[], forced: Token[]};

const sequences = new Map<LlamaContext, LlamaContextSequence>();
function sequenceOf(context: LlamaContext): LlamaContextSequence {
    if (!sequences.has(context))
        sequences.set(context, context.getSequence());
    return sequences.get(context)!;
}

async function distributions(context: LlamaContext, vocab: number, c: Case, load?: KvBody, dir?: string): Promise<Float64Array[]> {
    const sequence = sequenceOf(context);
    await sequence.clearHistory();
    {
        if (load != null) {
            const file = path.join(dir!, "load.bin");
            const {writeFile} = await import("node:fs/promises");
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
}

function meanKl(reference: Float64Array[][], other: Float64Array[][]): number {
    let sum = 0, n = 0;
    reference.forEach((positions, i) => positions.forEach((logits, j) => {
        sum += klDivergence(logits, other[i]![j]!);
        n++;
    }));
    return (sum / n) * 1000;
}

async function main(): Promise<void> {
    const llama = await getLlama({gpu: false, maxThreads: 1, logLevel: LlamaLogLevel.error});
    const model: LlamaModel = await llama.loadModel({modelPath});
    const vocab = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
    const rope = ropeParamsFromGguf(model.fileInfo);
    const contextOptions = {contextSize: 1024, threads: 1, sequences: 1, flashAttention: true} as const;
    const f16 = await model.createContext(contextOptions);

    await withTempDir("weft-codec-bench-", async (dir) => {
        // Cases: each story's prefix KV (all but the last token) and its f16 greedy continuation, teacher-forced.
        const cases: Case[] = [];
        const bodies: KvBody[] = [];
        for (let rotation = 0; rotation < stories.length; rotation++) {
            const text = [...stories.slice(rotation), ...stories.slice(0, rotation)].join("\n");
            const tokens = model.tokenize(text, true);
            const sequence = sequenceOf(f16);
            await sequence.clearHistory();
            await sequence.evaluateWithoutGeneratingNewTokens(tokens.slice(0, -1));
            const file = path.join(dir, "state.bin");
            await sequence.saveStateToFile(file);
            bodies.push(parseSeqStateFile(await readFile(file)).body);
            const continuation: Token[] = [];
            let next = tokens.at(-1)!;
            for (let i = 0; i < span; i++) {
                const [result] = await sequence.controlledEvaluate([[next, {generateNext: {token: true}}]]);
                next = result!.next!.token!;
                continuation.push(next);
            }
            cases.push({prefix: tokens.slice(0, -1), forced: [tokens.at(-1)!, ...continuation.slice(0, -1)]});
        }
        const reference: Float64Array[][] = [];
        for (const [i, c] of cases.entries())
            reference.push(await distributions(f16, vocab, c, bodies[i], dir));
        const direct: Float64Array[][] = [];
        for (const c of cases)
            direct.push(await distributions(f16, vocab, c));
        log(`f16 loaded vs prefilled: KL ${meanKl(reference, direct).toFixed(4)} mnat (the loading path itself)`);
        report.add({row: "f16", codec: "f16", bitsPerValue: 16, ratioToF16: 1, klMnat: 0, encodeMBps: null, decodeMBps: null});

        // llama.cpp refuses a q8_0/q4_0 KV cache for stories260K (head size 8, block 32), so their rows apply the block
        // formats to the same f16 KV rows (test/helpers/ggml-quant.ts), each row's 32 values one block.
        for (const [name, bits] of [["q8_0", 8.5], ["q4_0", 4.5]] as const) {
            const rows: Float64Array[][] = [];
            for (const [i, c] of cases.entries())
                rows.push(await distributions(f16, vocab, c, ggmlQuantRoundTrip(bodies[i]!, name), dir));
            report.add({row: `llama.cpp ${name}`, codec: name, bitsPerValue: bits, ratioToF16: 16 / bits, klMnat: meanKl(reference, rows), encodeMBps: null, decodeMBps: null});
        }

        const synthetic = syntheticKv(shapeLayers, shapeTokens, shapeWidth);
        const syntheticBytes = synthetic.reduce((sum, layer) => sum + layer.k.byteLength + layer.v.byteLength, 0);
        for (let level = 0; level < kvCodecLevelCount; level++) {
            let compressed = 0, values = 0;
            const rows: Float64Array[][] = [];
            for (const [i, c] of cases.entries()) {
                const file = await encodeKvBody(bodies[i]!, {level, fingerprint, threads, modeMask, rope: args.rotated ? null : rope, tuning});
                compressed += file.byteLength;
                values += bodies[i]!.layers.reduce((sum, layer) => sum + layer.k.rows.byteLength / 2 * 2, 0);
                const decoded = await decodeKvBody(file, {fingerprint, threads});
                rows.push(await distributions(f16, vocab, c, decoded.body, dir));
            }
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
                row: `weft L${level}${level === kvCodecDefaultLevel ? " (default)" : ""}${args.rotated ? " K rotated" : ""}`, codec: `weft-L${level}${args.rotated ? "-rotated" : ""}`,
                bitsPerValue: compressed * 8 / values, ratioToF16: values * 2 / compressed, klMnat: meanKl(reference, rows),
                encodeMBps: syntheticBytes / 1e6 / encodeSeconds, decodeMBps: syntheticBytes / 1e6 / decodeSeconds
            });
        }
        report.note(`KL on stories260K (${cases.length} chunks of ${Math.min(...cases.map((c) => c.prefix.length))}-${Math.max(...cases.map((c) => c.prefix.length))} tokens, ${span} positions each, CPU); MB/s of f16 bytes on a synthetic ${shapeLayers}x${shapeTokens}x${shapeWidth} chunk KV (K and V) with ${threads} threads; ${loadNote(loadAtStart)}`);
        report.note("Weft bits/value include the container (header, meta, per-channel parameters); llama.cpp's are its block formats' nominal sizes.");
    });
    await f16.dispose();
    await model.dispose();
    report.print();
}

await main();
