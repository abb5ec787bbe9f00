// The weft_native addon on stories260K (llama arch: 5 layers, 4 KV heads x 8 dims, so K/V rows of 32):
// in-memory sequence state round-trips and matches the state file's body, bad blobs are rejected cleanly, and
// layer K/V capture returns exactly the rows the KV cache stores.
import assert from "node:assert/strict";
import {readFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, test} from "node:test";
import {getLlama, type Llama, type LlamaContext, type LlamaContextSequence, LlamaLogLevel, type LlamaModel, type Token} from "node-llama-cpp";
import {
    captureLayerKV, contextHandleOf, getContextSequenceState, loadNativeAddon, loadSequenceState, releaseLayerCaptureContexts,
    saveSequenceState, sequenceIdOf, setContextSequenceState
} from "../../main/engine/native/native-addon.js";
import {makeTempDir, stories260kPath} from "../helpers/paths.js";
import {maxAbsDiff} from "../helpers/logits.js";

const load = loadNativeAddon();
const skip = load.addon === null ? `the weft_native addon is not built (node scripts/build-native.mjs): ${load.error}` : false;

const memoryMagic = 0xaf143cd8;
const fileMagic = 0x67677371;
const prompt = "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun.";
const otherPrompt = "Tom had a big red ball. He threw it to his dog, and the dog ran after it.";

function halfToFloat(bits: number): number {
    const sign = bits & 0x8000 ? -1 : 1;
    const exponent = (bits >> 10) & 0x1f;
    const mantissa = bits & 0x3ff;
    if (exponent === 0)
        return sign * mantissa * 2 ** -24;
    if (exponent === 0x1f)
        return mantissa === 0 ? sign * Infinity : NaN;
    return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

type ParsedLayer = {k: Float32Array, v: Float32Array};

/**
 * Minimal reader of an in-memory sequence state (f16/f32 KV, no M-RoPE cell extension): each layer's K and V as
 * token-major f32 rows [position][dimension], cells put back in position order.
 */
function parseStateBlob(blob: Uint8Array): {positions: number[], layers: ParsedLayer[]} {
    const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
    let at = 0;
    const u32 = () => { const value = view.getUint32(at, true); at += 4; return value; };
    const i32 = () => { const value = view.getInt32(at, true); at += 4; return value; };
    const u64 = () => { const value = Number(view.getBigUint64(at, true)); at += 8; return value; };
    const element = (type: number, offset: number) => type === 0 ? view.getFloat32(offset, true) : halfToFloat(view.getUint16(offset, true));

    assert.equal(u32(), memoryMagic);
    i32(); // source seq_id
    const nStream = u32();
    let found: {positions: number[], layers: ParsedLayer[]} | undefined;
    for (let stream = 0; stream < nStream; stream++) {
        const cellCount = u32();
        if (cellCount === 0)
            continue;
        assert.equal(found, undefined, "one non-empty stream");
        const positions: number[] = [];
        for (let cell = 0; cell < cellCount; cell++) {
            positions.push(i32());
            const nSeq = u32();
            at += 4 * nSeq;
        }
        const order = positions.map((pos, cell) => ({pos, cell})).sort((a, b) => a.pos - b.pos).map((entry) => entry.cell);
        const rows = (type: number, rowSize: number): Float32Array => {
            const size = type === 0 ? 4 : 2;
            const width = rowSize / size;
            const out = new Float32Array(cellCount * width);
            order.forEach((cell, row) => {
                for (let i = 0; i < width; i++)
                    out[row * width + i] = element(type, at + cell * rowSize + i * size);
            });
            at += cellCount * rowSize;
            return out;
        };
        const vTrans = u32() !== 0;
        const nLayer = u32();
        const layers: ParsedLayer[] = [];
        for (let layer = 0; layer < nLayer; layer++) {
            const type = i32();
            layers.push({k: rows(type, u64()), v: new Float32Array(0)});
        }
        for (let layer = 0; layer < nLayer; layer++) {
            const type = i32();
            if (vTrans) {
                const elemSize = u32();
                const width = u32();
                const v = new Float32Array(cellCount * width);
                for (let dim = 0; dim < width; dim++)
                    order.forEach((cell, row) => { v[row * width + dim] = element(type, at + (dim * cellCount + cell) * elemSize); });
                at += width * cellCount * elemSize;
                layers[layer]!.v = v;
            } else {
                layers[layer]!.v = rows(type, u64());
            }
        }
        found = {positions: positions.slice().sort((a, b) => a - b), layers};
    }
    assert.equal(at, blob.byteLength, "the whole blob was read");
    assert.ok(found !== undefined, "the blob has cells");
    return found;
}

/** Largest |stored - captured| relative to f16's half-ulp at the captured value (<= 1 means "same f16"). */
function maxF16Error(stored: Float32Array, captured: Float32Array): number {
    assert.equal(stored.length, captured.length);
    let max = 0;
    for (let i = 0; i < stored.length; i++) {
        const value = Math.abs(captured[i]!);
        const halfUlp = value < 2 ** -14 ? 2 ** -25 : 2 ** (Math.floor(Math.log2(value)) - 11);
        max = Math.max(max, Math.abs(stored[i]! - captured[i]!) / halfUlp);
    }
    return max;
}

async function nextLogits(sequence: LlamaContextSequence, token: Token): Promise<[Token, number][]> {
    const [result] = await sequence.controlledEvaluate([[token, {generateNext: {logits: true}}]]);
    const logits = result?.next.logits;
    assert.ok(logits != null && logits.size > 0, "controlledEvaluate returned logits");
    return [...logits.entries()];
}

async function greedy(sequence: LlamaContextSequence, first: Token, count: number): Promise<Token[]> {
    const tokens: Token[] = [];
    for await (const token of sequence.evaluate([first], {temperature: 0})) {
        tokens.push(token);
        if (tokens.length >= count)
            break;
    }
    return tokens;
}

describe("weft_native addon", {skip}, () => {
    let llama: Llama;
    let model: LlamaModel;
    let contextA: LlamaContext;
    let contextB: LlamaContext;
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let promptTokens: Token[];

    before(async () => {
        temp = await makeTempDir();
        // Two cores here: one thread, or llama.cpp oversubscribes and runs about 1000x slower.
        llama = await getLlama({gpu: false, maxThreads: 1, logLevel: LlamaLogLevel.error});
        model = await llama.loadModel({modelPath: stories260kPath});
        // Two sequences each (one KV stream per sequence): state moves from A's sequence 0 to B's sequence 1.
        contextA = await model.createContext({contextSize: 256, threads: 1, sequences: 2});
        contextB = await model.createContext({contextSize: 256, threads: 1, sequences: 2});
        promptTokens = [model.tokens.bos!, ...model.tokenize(prompt)];
    });

    after(async () => {
        await contextA?.dispose();
        await contextB?.dispose();
        await model?.dispose();
        await llama?.dispose();
        await temp?.cleanup();
    });

    test("the llama.cpp functions resolve from the library node-llama-cpp loaded", () => {
        const report = load.addon!.llamaFunctionsAvailable();
        assert.deepEqual(report.missing, []);
        assert.equal(report.ok, true);
        assert.match(report.library ?? "", /llama/i);
    });

    test("(a) a state blob moved into another context's sequence continues exactly like the original", async () => {
        const source = contextA.getSequence();
        const target = contextB.getSequence();
        const other = contextB.getSequence();
        assert.equal(sequenceIdOf(source), 0);
        assert.equal(sequenceIdOf(other), 1);
        try {
            await source.evaluateWithoutGeneratingNewTokens(promptTokens);
            const {state, tokens} = await saveSequenceState(source);
            assert.deepEqual(tokens, promptTokens);
            assert.equal(state.readUInt32LE(0), memoryMagic);
            assert.equal(state.readInt32LE(4), 0);

            // Into sequence 1 of context B (sequence 0 there holds something else meanwhile).
            await target.evaluateWithoutGeneratingNewTokens(model.tokenize(otherPrompt));
            const bytesRead = await loadSequenceState(other, state, tokens);
            assert.equal(bytesRead, state.length);
            assert.deepEqual(other.contextTokens, promptTokens);
            // Saved back, it holds the same cells and K/V (in stream 1 of B instead of stream 0 of A).
            assert.deepEqual(parseStateBlob(await getContextSequenceState(contextB, 1)), parseStateBlob(state));

            const next = model.tokenize(" She")[0]!;
            const logitsOriginal = await nextLogits(source, next);
            const logitsLoaded = await nextLogits(other, next);
            assert.deepEqual(logitsLoaded, logitsOriginal, "identical next-token logits");

            const greedyOriginal = await greedy(source, logitsOriginal[0]![0], 5);
            const greedyLoaded = await greedy(other, logitsLoaded[0]![0], 5);
            assert.equal(greedyOriginal.length, 5);
            assert.deepEqual(greedyLoaded, greedyOriginal, "identical greedy continuation");
        } finally {
            source.dispose();
            target.dispose();
            other.dispose();
        }
    });

    test("(b) the in-memory blob is the state file's body after its header", async () => {
        const sequence = contextA.getSequence();
        try {
            await sequence.evaluateWithoutGeneratingNewTokens(promptTokens);
            const {state} = await saveSequenceState(sequence);
            const file = path.join(temp.dir, "sequence.state");
            await sequence.saveStateToFile(file);
            const bytes = await readFile(file);
            assert.equal(bytes.readUInt32LE(0), fileMagic);
            assert.equal(bytes.readUInt32LE(4), 3);
            const nTokens = bytes.readUInt32LE(8);
            assert.equal(nTokens, promptTokens.length);
            const fileTokens = Array.from({length: nTokens}, (_, i) => bytes.readInt32LE(12 + 4 * i));
            assert.deepEqual(fileTokens, promptTokens);
            const fileBody = bytes.subarray(12 + 4 * nTokens);
            assert.equal(fileBody.length, state.length - 8);
            assert.ok(fileBody.equals(state.subarray(8)), "same body bytes");
        } finally {
            sequence.dispose();
        }
    });

    test("(c) bad blobs are rejected with a clear error and the context keeps working", async () => {
        const source = contextA.getSequence();
        const target = contextB.getSequence();
        try {
            await source.evaluateWithoutGeneratingNewTokens(promptTokens);
            const {state, tokens} = await saveSequenceState(source);
            const seqId = sequenceIdOf(target);

            await assert.rejects(loadSequenceState(target, state.subarray(0, state.length - 100), tokens),
                /llama_state_seq_set_data rejected the \d+-byte state blob.*truncated/);
            assert.deepEqual(target.contextTokens, [], "a failed load leaves the sequence empty");
            await assert.rejects(setContextSequenceState(contextB, seqId, state.subarray(0, 4)), /too short/);
            const wrongMagic = Buffer.from(state);
            wrongMagic.writeUInt32LE(0x12345678, 0);
            await assert.rejects(setContextSequenceState(contextB, seqId, wrongMagic), /magic 0xaf143cd8 \(found 0x12345678\)/);
            await target.evaluateWithoutGeneratingNewTokens(promptTokens.slice(0, 5));
            await assert.rejects(loadSequenceState(target, wrongMagic, tokens), /magic/);
            assert.deepEqual(target.contextTokens, [], "a rejected load leaves the sequence empty, for node-llama-cpp too");
            await assert.rejects(setContextSequenceState(contextB, 7, state), /seqId must be an integer in \[0, 1\]/);
            await assert.rejects(load.addon!.getSequenceState({} as ReturnType<typeof contextHandleOf>, 0), /not a node-llama-cpp context handle/);

            // The context still works: the sequence evaluates from scratch, then the full blob loads and matches.
            await target.evaluateWithoutGeneratingNewTokens(promptTokens);
            const next = model.tokenize(" She")[0]!;
            const fresh = await nextLogits(target, next);
            await loadSequenceState(target, state, tokens);
            const loaded = await nextLogits(target, next);
            const original = await nextLogits(source, next);
            assert.deepEqual(loaded, original);
            assert.equal(fresh[0]![0], original[0]![0], "fresh evaluation agrees on the top token");
        } finally {
            source.dispose();
            target.dispose();
        }
    });

    for (const flashAttention of [true, false]) {
        test(`(d) captureLayerKV(layer 1) returns the K/V rows the KV cache stores (flash attention ${flashAttention ? "on" : "off"})`, async () => {
            const layer = 1;
            // Flash attention changes layer outputs by float rounding: capture with the setting of the compared context.
            const captured = await captureLayerKV(model, promptTokens, layer, {contextSize: 256, threads: 1, flashAttention});
            const n = promptTokens.length;
            assert.equal(captured.nTokens, n);
            assert.equal(captured.layer, layer);
            assert.equal(captured.nEmbdK, 32, "4 KV heads x 8 dims");
            assert.equal(captured.nEmbdV, 32);
            assert.equal(captured.k.length, n * captured.nEmbdK);
            assert.equal(captured.v.length, n * captured.nEmbdV);
            assert.ok(captured.k.every(Number.isFinite) && captured.v.every(Number.isFinite), "finite");
            assert.match(captured.kTensor, /^Kcur-1\b/);
            assert.match(captured.vTensor, /^Vcur-1\b/);

            // Against the cache of a normal context that evaluated the same tokens at positions 0..n-1 (stored as f16;
            // with flash attention off V is stored transposed).
            const context = await model.createContext({contextSize: 256, threads: 1, sequences: 1, flashAttention});
            try {
                const sequence = context.getSequence();
                await sequence.evaluateWithoutGeneratingNewTokens(promptTokens);
                const parsed = parseStateBlob((await saveSequenceState(sequence)).state);
                assert.deepEqual(parsed.positions, promptTokens.map((_, i) => i));
                assert.equal(parsed.layers.length, 5);
                const stored = parsed.layers[layer]!;
                const kError = maxF16Error(stored.k, captured.k);
                const vError = maxF16Error(stored.v, captured.v);
                assert.ok(kError <= 1.01, `K is the cache's K before f16 rounding (max error ${kError} half-ulps)`);
                assert.ok(vError <= 1.01, `V is the cache's V before f16 rounding (max error ${vError} half-ulps)`);
                // And not by accident: layers 0 and 2 differ from the captured layer 1.
                assert.ok(maxAbsDiff(parsed.layers[0]!.k, captured.k) > 0.01);
                assert.ok(maxAbsDiff(parsed.layers[2]!.k, captured.k) > 0.01);
            } finally {
                await context.dispose();
            }
        });
    }

    test("(d) capture is deterministic, depends on the prompt, and honours batch size and positions", async () => {
        const options = {contextSize: 256, threads: 1};
        const first = await captureLayerKV(model, promptTokens, 1, options);
        const again = await captureLayerKV(model, Int32Array.from(promptTokens), 1, options);
        assert.deepEqual(again.k, first.k);
        assert.deepEqual(again.v, first.v);

        const otherTokens = [model.tokens.bos!, ...model.tokenize(otherPrompt)];
        const other = await captureLayerKV(model, otherTokens, 1, options);
        const common = Math.min(otherTokens.length, promptTokens.length) * first.nEmbdK;
        assert.ok(maxAbsDiff(other.k.subarray(32, common), first.k.subarray(32, common)) > 0.01, "different prompts differ");

        const batched = await captureLayerKV(model, promptTokens, 1, {...options, batchSize: 5});
        assert.ok(maxAbsDiff(batched.k, first.k) < 1e-3, "five tokens per decode gives the same rows");
        assert.ok(maxAbsDiff(batched.v, first.v) < 1e-3);

        // Shifted positions: RoPE is relative, so layer-1 V (from layer 0's attention) barely moves, K rotates.
        const shifted = await captureLayerKV(model, promptTokens, 1,
            {...options, positions: Int32Array.from(promptTokens, (_, i) => i + 40)});
        assert.ok(maxAbsDiff(shifted.v, first.v) < 1e-3, "V is position-independent up to rounding");
        assert.ok(maxAbsDiff(shifted.k, first.k) > 0.01, "K is rotated to the new positions");

        const layer0 = await captureLayerKV(model, promptTokens, 0, options);
        assert.match(layer0.kTensor, /^Kcur-0\b/);
        const last = await captureLayerKV(model, promptTokens, 4, options);
        assert.match(last.kTensor, /^Kcur-4\b/);

        await assert.rejects(captureLayerKV(model, promptTokens, 5, options), /layer must be an integer in \[0, 4\]/);
        await assert.rejects(captureLayerKV(model, promptTokens, 1, {contextSize: 8, threads: 1}), /do not fit options.contextSize 8/);
        await assert.rejects(captureLayerKV(model, Uint32Array.of(100000), 1, options), /invalid batch/);

        assert.ok(releaseLayerCaptureContexts(model) >= 1, "cached capture contexts are released");
        const afterRelease = await captureLayerKV(model, promptTokens, 1, options);
        assert.deepEqual(afterRelease.k, first.k, "a new capture context gives the same rows");
    });

    test("(d) disposing a model releases its capture contexts first", async () => {
        const second = await llama.loadModel({modelPath: stories260kPath});
        const options = {contextSize: 64, threads: 1};
        const tokens = promptTokens.slice(0, 8);
        const [a, b] = await Promise.all([captureLayerKV(second, tokens, 2, options), captureLayerKV(second, tokens, 2, options)]);
        assert.deepEqual(a.k, b.k, "concurrent captures on one cached context take turns");
        await second.dispose();
        assert.equal(releaseLayerCaptureContexts(second), 0, "already released by the model's onDispose");
        await assert.rejects(captureLayerKV(second, tokens, 2, options), /disposed/);
        // The other model's capture contexts are untouched.
        const again = await captureLayerKV(model, tokens, 2, options);
        assert.deepEqual(again.k, a.k);
    });
});
