// Weft's llama.cpp patch 0001 (native/patches/0001-allow-scattered-positions-in-batch.diff), on stories260K (real
// weights, CPU, 1 thread): after the cells of positions 5, 17 and 30 of a 40-token sequence are removed, ONE decode
// recomputes those three tokens at their own positions, and the next token's logits then match a fresh evaluation of
// the same 41 tokens. The stock prebuilt binary rejects that batch; it runs in a child process (this file, started
// with WEFT_PATCHED_BATCH_CHILD=stock), since one process can hold only one build's libllama/libggml.
//
// Needs the patched CPU build: node scripts/build-llama.mjs --gpu false (skipped only when its marker file is absent).
import assert from "node:assert/strict";
import {spawnSync} from "node:child_process";
import {existsSync} from "node:fs";
import path from "node:path";
import {performance} from "node:perf_hooks";
import {fileURLToPath} from "node:url";
import {after, before, describe, test} from "node:test";
import {
    type ControlledEvaluateInputItem, getLlama, LlamaLogLevel, type Llama, type LlamaContext, type LlamaContextSequence, type LlamaModel, type Token
} from "node-llama-cpp";
import {
    detectPatchedBuild, getPatchedLlama, markerFileName, nodeLlamaCppDir, scatteredPositionsPatch
} from "../../main/engine/native/patched-build.js";
import {stories260kPath, testThreads} from "../helpers/paths.js";
import {argmax, maxAbsDiff} from "../helpers/logits.js";

const childEnv = "WEFT_PATCHED_BATCH_CHILD";
const text = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends. " +
    "One day, she saw a big red ball under a tree.";
const promptLength = 40;
const recomputed = [5, 17, 30];
// Largest allowed |logit difference| between the scattered recompute and a fresh evaluation. stories260K's next-token
// logits span about 30. The main reference, one 41-token batch, computes the last token in another batch
// shape than the recompute path (a 1-token batch after the 40-token prompt), which alone moves logits by about 1.5e-3
// on CPU (measured: a fresh "40 then 1" evaluation differs from a fresh 41-token one by 1.48e-3, and the recompute
// path matches "40 then 1" exactly, max |diff| 0). So 3e-3: twice that batch-shape rounding, and 40 times below the
// effect of the three tokens (the control, holes left unfilled, moves logits by about 0.12).
const tolerance = 3e-3;

/** The private part of node-llama-cpp 3.22.1's AddonContext (dist/evaluator/LlamaContext/LlamaContext.js) used here. */
type AddonContext = {
    initBatch(size: number): void;
    addToBatch(sequenceId: number, firstTokenPosition: number, tokens: Uint32Array, logitIndexes: Uint32Array): Uint32Array;
    decodeBatch(): Promise<void>;
    removeTokenCellsFromSequence(sequenceId: number, start: number, end: number): boolean;
    getSequenceKvCacheMinPosition(sequenceId: number): number;
    getSequenceKvCacheMaxPosition(sequenceId: number): number;
};

function addon(context: LlamaContext): AddonContext {
    return (context as unknown as {_ctx: AddonContext})._ctx;
}

function sequenceId(sequence: LlamaContextSequence): number {
    return (sequence as unknown as {_sequenceId: number})._sequenceId;
}

function promptTokens(model: LlamaModel): Token[] {
    const tokens = [model.tokens.bos!, ...model.tokenize(text)];
    assert.ok(tokens.length > promptLength, `the text gives only ${tokens.length} tokens`);
    return tokens.slice(0, promptLength + 1);
}

/** Removes the cell of each position (llama_memory_seq_rm of [p, p + 1)). */
function removeCells(context: LlamaContext, seq: number, positions: readonly number[]): void {
    for (const p of positions)
        assert.equal(addon(context).removeTokenCellsFromSequence(seq, p, p + 1), true, `seq_rm of position ${p}`);
}

/** One llama_decode of a batch holding the given (position, token) pairs of one sequence, without outputs. */
async function decodeAt(context: LlamaContext, seq: number, entries: readonly {pos: number, token: Token}[]): Promise<void> {
    const ctx = addon(context);
    ctx.initBatch(entries.length);
    for (const {pos, token} of entries)
        ctx.addToBatch(seq, pos, Uint32Array.of(token), new Uint32Array(0));
    await ctx.decodeBatch();
}

async function nextLogits(sequence: LlamaContextSequence, tokens: readonly Token[]): Promise<Float64Array> {
    const input: ControlledEvaluateInputItem[] = [...tokens.slice(0, -1), [tokens.at(-1)!, {generateNext: {logits: true}}]];
    const results = await sequence.controlledEvaluate(input);
    const logits = results.at(-1)?.next.logits;
    assert.ok(logits && logits.size > 0, "no logits returned");
    const out = new Float64Array(Math.max(...logits.keys()) + 1);
    for (const [token, value] of logits)
        out[token] = value;
    return out;
}


/** llama.cpp's log lines reach JS through a queue, after the decode's promise may have settled: wait for them. */
async function waitForLog(logs: readonly string[], pattern: RegExp, timeoutMs = 5000): Promise<string> {
    const deadline = performance.now() + timeoutMs;
    while (!pattern.test(logs.join("")) && performance.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 10));
    return logs.join("");
}

type StockResult = {buildType: string, rejected: boolean, error?: string, log: string, tailAccepted: boolean};

/** Child: the same scattered batch against node-llama-cpp's stock prebuilt binary. */
async function stockChild(): Promise<void> {
    const logs: string[] = [];
    // A custom CMake option makes getLlama's local-build folder name differ (linux-x64-<hash>, never built), so it
    // falls through to the prebuilt binary, which it matches without custom options.
    const llama = await getLlama({
        gpu: false, maxThreads: testThreads, build: "never", cmakeOptions: {WEFT_TEST_STOCK_BINARY: "1"}, progressLogs: false,
        logLevel: LlamaLogLevel.error, logger: (_level, message) => { logs.push(message); }
    });
    const model = await llama.loadModel({modelPath: stories260kPath});
    const context = await model.createContext({contextSize: 128, threads: testThreads, sequences: 1});
    const sequence = context.getSequence();
    const tokens = promptTokens(model);
    await sequence.evaluateWithoutGeneratingNewTokens(tokens.slice(0, promptLength));
    const seq = sequenceId(sequence);
    removeCells(context, seq, recomputed);
    const result: StockResult = {buildType: llama.buildType, rejected: false, log: "", tailAccepted: false};
    try {
        await decodeAt(context, seq, recomputed.map((pos) => ({pos, token: tokens[pos]!})));
    } catch (error) {
        result.rejected = true;
        result.error = (error as Error).message;
    }
    result.log = await waitForLog(logs, /failed to decode/);
    // The harness itself works on stock binaries: appending at pos_max + 1 decodes.
    await decodeAt(context, seq, [{pos: promptLength, token: tokens[promptLength]!}]);
    result.tailAccepted = addon(context).getSequenceKvCacheMaxPosition(seq) === promptLength;
    console.log(JSON.stringify(result));
    await context.dispose();
    await model.dispose();
    await llama.dispose();
}

function registerTests(): void {
    const nlcDir = nodeLlamaCppDir();
    const markerAbsent = nlcDir === undefined || !existsSync(path.join(nlcDir, "llama", markerFileName));
    const skip = markerAbsent
        ? "no patched llama.cpp build (node_modules/node-llama-cpp/llama/weft-patches.json is absent): " +
          "run node scripts/build-llama.mjs --gpu false"
        : false;

    describe("llama.cpp patch 0001: scattered positions in one batch (stories260K, CPU)", {skip}, () => {
        let llama: Llama;
        let model: LlamaModel;
        let context: LlamaContext;
        const logs: string[] = [];

        before(async () => {
            const status = detectPatchedBuild({gpu: false});
            assert.ok(status.patched, `marker present but no usable patched CPU build: ${status.patched ? "" : status.reason}`);
            assert.ok(status.patches.includes(scatteredPositionsPatch), `the build lacks ${scatteredPositionsPatch}`);
            llama = await getPatchedLlama({gpu: false, maxThreads: testThreads, logger: (_level, message) => { logs.push(message); }});
            model = await llama.loadModel({modelPath: stories260kPath});
            context = await model.createContext({contextSize: 128, threads: testThreads, sequences: 5});
        });

        after(async () => {
            await context?.dispose();
            await model?.dispose();
            await llama?.dispose();
        });

        test("getPatchedLlama loads node-llama-cpp's local build, not the prebuilt one", () => {
            assert.equal(llama.buildType, "localBuild");
            assert.equal(llama.gpu, false);
        });

        test("one decode recomputes positions 5, 17, 30 and the next logits match a fresh evaluation", async () => {
            const tokens = promptTokens(model);
            const [patched, fresh, freshSplit, holes] = [context.getSequence(), context.getSequence(), context.getSequence(),
                context.getSequence()];

            await patched.evaluateWithoutGeneratingNewTokens(tokens.slice(0, promptLength));
            const seq = sequenceId(patched);
            removeCells(context, seq, recomputed);
            const t0 = performance.now();
            await decodeAt(context, seq, recomputed.map((pos) => ({pos, token: tokens[pos]!})));
            const decodeMs = performance.now() - t0;
            assert.equal(addon(context).getSequenceKvCacheMinPosition(seq), 0);
            assert.equal(addon(context).getSequenceKvCacheMaxPosition(seq), promptLength - 1);
            const recomputedLogits = await nextLogits(patched, [tokens[promptLength]!]);

            // The reference: a fresh evaluation of the same 41 tokens in one batch.
            const freshLogits = await nextLogits(fresh, tokens);
            // The same, with the last token in its own batch as on the recompute path.
            await freshSplit.evaluateWithoutGeneratingNewTokens(tokens.slice(0, promptLength));
            const freshSplitLogits = await nextLogits(freshSplit, [tokens[promptLength]!]);

            // Control: the same holes left unfilled change the logits far beyond the tolerance.
            await holes.evaluateWithoutGeneratingNewTokens(tokens.slice(0, promptLength));
            removeCells(context, sequenceId(holes), recomputed);
            const holeLogits = await nextLogits(holes, [tokens[promptLength]!]);

            const diff = maxAbsDiff(recomputedLogits, freshLogits);
            const splitDiff = maxAbsDiff(recomputedLogits, freshSplitLogits);
            const controlDiff = maxAbsDiff(holeLogits, freshLogits);
            console.log(`  scattered recompute of ${recomputed.length} tokens: one decode in ${decodeMs.toFixed(2)} ms; ` +
                `next-token logits max |diff| vs a fresh ${promptLength + 1}-token batch ${diff.toExponential(2)}, ` +
                `vs fresh ${promptLength} + 1 ${splitDiff.toExponential(2)} (tolerance ${tolerance}); ` +
                `holes not recomputed: ${controlDiff.toExponential(2)}`);
            assert.ok(diff <= tolerance, `max |logit diff| vs the fresh evaluation ${diff} > ${tolerance}`);
            assert.ok(splitDiff <= tolerance, `max |logit diff| vs the fresh split evaluation ${splitDiff} > ${tolerance}`);
            assert.equal(argmax(recomputedLogits), argmax(freshLogits));
            assert.ok(controlDiff > 10 * tolerance, `the control differs by only ${controlDiff}: the test would not notice`);
        });

        test("the patched build still rejects repeated and negative positions of a sequence in one batch", async () => {
            const tokens = promptTokens(model);
            const sequence = context.getSequence();
            const seq = sequenceId(sequence);
            await sequence.evaluateWithoutGeneratingNewTokens(tokens.slice(0, promptLength));
            removeCells(context, seq, [5]);
            logs.length = 0;
            await assert.rejects(decodeAt(context, seq, [{pos: 5, token: tokens[5]!}, {pos: 5, token: tokens[6]!}]));
            await assert.rejects(decodeAt(context, seq, [{pos: -1, token: tokens[5]!}]));
            await assert.rejects(decodeAt(context, seq, [{pos: 17, token: tokens[17]!}, {pos: 5, token: tokens[5]!}]));
            assert.match(await waitForLog(logs, /positions are negative, repeated or decreasing/),
                /positions are negative, repeated or decreasing/);
            // The rejected batches left the cache alone: position 5 is still a hole, and filling it works.
            await decodeAt(context, seq, [{pos: 5, token: tokens[5]!}]);
            assert.equal(addon(context).getSequenceKvCacheMaxPosition(seq), promptLength - 1);
        });

        test("the stock prebuilt binary rejects the same batch (child process)", () => {
            const child = spawnSync(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url)], {
                env: {...process.env, [childEnv]: "stock"}, encoding: "utf8", timeout: 120_000
            });
            const line = child.stdout.split("\n").reverse().find((l) => l.startsWith("{"));
            assert.ok(line, `the child printed no result (exit ${child.status}):\n${child.stdout}\n${child.stderr}`);
            const result = JSON.parse(line) as StockResult;
            console.log(`  stock binary: ${result.error}; llama.cpp said: ${result.log.trim().split("\n").map((l) => l.trim()).join(" | ")}`);
            assert.equal(result.buildType, "prebuilt");
            assert.equal(result.rejected, true);
            assert.match(result.log, /consecutive/);
            assert.equal(result.tailAccepted, true);
            assert.equal(child.status, 0);
        });
    });
}

if (process.env[childEnv] === "stock")
    await stockChild();
else
    registerTests();
