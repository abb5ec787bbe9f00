// Sequence-state blobs and the K re-positioning against llama.cpp itself, on stories260K (real weights, CPU):
// byte-exact parse/serialize of real states, concatenation (both V layouts), and a chunk moved by the RoPE shift versus
// the same chunk evaluated fresh at that offset and versus llama.cpp's own K-shift. The f16 helpers and the RoPE
// math are checked without a model first.
import assert from "node:assert/strict";
import {readFile, writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {getLlama, type Llama, type LlamaContext, type LlamaContextSequence, LlamaLogLevel, type LlamaModel, type Token} from "node-llama-cpp";
import {
    f16ToF32, f32ToF16, floatToHalf, ggmlTypeF16, ggmlTypeF32, halfToFloat, KvBlobError, type KvBody,
    parseKvBody, parseSeqState, parseSeqStateFile, parseSeqStateMemory, serializeKvBody, serializeSeqState,
    serializeSeqStateFile, serializeSeqStateMemory, sliceCells
} from "../../main/engine/kv/kv-blob.js";
import {type RopeParams, ropeParamsFromGguf, RopeUnsupportedError} from "../../main/engine/kv/rope-params.js";
import {concatBlobs, ropeCache, ropeShiftBody, ropeShiftRows, withPositions} from "../helpers/kv-reference.js";
import {makeTempDir, stories260kPath, testThreads} from "../helpers/paths.js";
import {argmax, klDivergence, logitsAfter as logitsOf, maxAbsDiff} from "../helpers/logits.js";

describe("f16 helpers", () => {
    it("round-trips every f16 value and rounds f32 to nearest, ties to even", () => {
        for (let h = 0; h < 65536; h++) {
            const value = halfToFloat(h);
            if (Number.isNaN(value))
                assert.equal(floatToHalf(value) & 0x7e00, 0x7e00);
            else
                assert.equal(floatToHalf(value), h, `half 0x${h.toString(16)}`);
        }
        // Midpoints between neighbours (exact in f32) go to the even one; anything off the midpoint goes to the nearer.
        for (let h = 0; h < 0x7bff; h++) {
            const a = halfToFloat(h), b = halfToFloat(h + 1), mid = (a + b) / 2;
            assert.equal(floatToHalf(mid), h % 2 === 0 ? h : h + 1);
            assert.equal(floatToHalf(Math.fround(mid + (b - a) / 1000)), h + 1);
            assert.equal(floatToHalf(Math.fround(mid - (b - a) / 1000)), h);
        }
        assert.equal(floatToHalf(65519), 0x7bff);
        assert.equal(floatToHalf(65520), 0x7c00, "past the largest half rounds to infinity");
        assert.equal(floatToHalf(2 ** -25), 0, "half the smallest subnormal ties to zero");
        assert.equal(floatToHalf(2 ** -25 * 1.001), 1);
        assert.equal(floatToHalf(-0), 0x8000);
        assert.equal(floatToHalf(1e-30), 0);
        assert.equal(floatToHalf(-Infinity), 0xfc00);
        const values = Float32Array.from([0, 1, -2.5, 3.14159, 1e-5, 60000, -1e-7]);
        assert.deepEqual(Array.from(f16ToF32(f32ToF16(values))), Array.from(values, (v) => halfToFloat(floatToHalf(v))));
    });
});

const llamaParams = (overrides: Partial<RopeParams> = {}): RopeParams => ({
    architecture: "llama", ropeType: "norm", nRot: 8, headDim: 8, freqBase: 10000, freqScale: 1, freqFactors: null, ...overrides
});

function f32Rows(values: number[][]): {type: number, rowSize: number, rows: Uint8Array} {
    const data = Float32Array.from(values.flat());
    return {type: ggmlTypeF32, rowSize: values[0]!.length * 4, rows: new Uint8Array(data.buffer)};
}

const asF32 = (rows: Uint8Array) => new Float32Array(rows.buffer, rows.byteOffset, rows.byteLength / 4);

describe("RoPE shift math", () => {
    it("computes the angles as ggml_rope_cache_init does", () => {
        const params = llamaParams({nRot: 8});
        const cache = ropeCache(3, params);
        for (let i = 0; i < 4; i++) {
            const angle = 3 * 10000 ** (-2 * i / 8);
            assert.ok(Math.abs(cache[2 * i]! - Math.cos(angle)) < 1e-6);
            assert.ok(Math.abs(cache[2 * i + 1]! - Math.sin(angle)) < 1e-6);
        }
        const scaled = ropeCache(3, llamaParams({freqScale: 0.5, freqFactors: Float32Array.from([1, 2, 4, 8])}));
        for (let i = 0; i < 4; i++)
            assert.ok(Math.abs(scaled[2 * i + 1]! - Math.sin(0.5 * 3 * 10000 ** (-2 * i / 8) / 2 ** i)) < 1e-6);
    });

    it("pairs adjacent values for NORM and values n_rot/2 apart for NEOX, leaving dimensions past n_rot alone", () => {
        const row = [1, 0, 0, 0, 5, 6]; // one head of 6, n_rot 4
        const d = 2, theta0 = d, theta1 = d * 10000 ** (-2 / 4);
        const norm = asF32(ropeShiftRows(f32Rows([row]), d, llamaParams({nRot: 4, headDim: 6})).rows);
        assert.deepEqual(Array.from(norm).map((x) => +x.toFixed(5)), [Math.cos(theta0), Math.sin(theta0), 0, 0, 5, 6].map((x) => +x.toFixed(5)));
        const neox = asF32(ropeShiftRows(f32Rows([[1, 1, 0, 0, 5, 6]]), d, llamaParams({ropeType: "neox", nRot: 4, headDim: 6})).rows);
        assert.deepEqual(Array.from(neox).map((x) => +x.toFixed(5)),
            [Math.cos(theta0), Math.cos(theta1), Math.sin(theta0), Math.sin(theta1), 5, 6].map((x) => +x.toFixed(5)));
        const none = ropeShiftRows(f32Rows([row]), d, llamaParams({ropeType: "none", nRot: 4, headDim: 6}));
        assert.deepEqual(Array.from(asF32(none.rows)), row);
    });

    it("composes (d1 then d2 = d1 + d2), inverts, rotates every head, and leaves the source untouched", () => {
        for (const ropeType of ["norm", "neox"] as const) {
            const params = llamaParams({ropeType, nRot: 8, headDim: 8});
            const values = Array.from({length: 3}, (_, cell) => Array.from({length: 16}, (_, i) => Math.sin(cell * 31 + i * 7) * 3));
            const source = f32Rows(values);
            const before = Array.from(asF32(source.rows));
            const twice = ropeShiftRows(ropeShiftRows(source, 5, params), 7, params);
            const once = ropeShiftRows(source, 12, params);
            const back = ropeShiftRows(ropeShiftRows(source, 40, params), -40, params);
            assert.deepEqual(Array.from(asF32(source.rows)), before, "the source is not modified");
            asF32(twice.rows).forEach((x, i) => assert.ok(Math.abs(x - asF32(once.rows)[i]!) < 1e-4));
            asF32(back.rows).forEach((x, i) => assert.ok(Math.abs(x - before[i]!) < 1e-4));
            // The second head of each row moved too (it is not the identity).
            assert.ok(Math.abs(asF32(once.rows)[8]! - before[8]!) > 1e-3);
            // Per-cell deltas: cell i moved by deltas[i].
            const perCell = asF32(ropeShiftRows(source, [0, 12, 5], params).rows);
            assert.deepEqual(Array.from(perCell.subarray(0, 16)), before.slice(0, 16));
            perCell.subarray(16, 32).forEach((x, i) => assert.ok(Math.abs(x - asF32(once.rows)[16 + i]!) < 1e-6));
        }
    });

    it("rotates f16 rows in f32 and rounds back, as ggml's kernel does", () => {
        const params = llamaParams();
        const values = Float32Array.from({length: 32}, (_, i) => Math.cos(i) * 7);
        const halves = f32ToF16(values);
        const f16 = ropeShiftRows({type: ggmlTypeF16, rowSize: 32, rows: new Uint8Array(halves.buffer)}, 9, params);
        const f32 = ropeShiftRows({type: ggmlTypeF32, rowSize: 64, rows: new Uint8Array(f16ToF32(halves).buffer)}, 9, params);
        assert.deepEqual(Array.from(new Uint16Array(f16.rows.buffer, f16.rows.byteOffset, 32)), Array.from(f32ToF16(asF32(f32.rows))));
    });

    it("builds parameters from GGUF metadata and refuses what it cannot reproduce", () => {
        const llama = {general: {architecture: "llama"}, llama: {embedding_length: 64, attention: {head_count: 8}, rope: {dimension_count: 8}}};
        assert.deepEqual(ropeParamsFromGguf(llama), llamaParams());
        assert.deepEqual(ropeParamsFromGguf({"general.architecture": "llama", "llama.embedding_length": 64, "llama.attention.head_count": 8}), llamaParams());
        const qwen = ropeParamsFromGguf({
            general: {architecture: "qwen2"},
            qwen2: {embedding_length: 896, attention: {head_count: 14, head_count_kv: 2}, rope: {freq_base: 1000000}}
        });
        assert.deepEqual({type: qwen.ropeType, nRot: qwen.nRot, headDim: qwen.headDim, base: qwen.freqBase}, {type: "neox", nRot: 64, headDim: 64, base: 1e6});
        const phi2 = ropeParamsFromGguf({general: {architecture: "phi2"}, phi2: {embedding_length: 2560, attention: {head_count: 32}, rope: {dimension_count: 32}}});
        assert.deepEqual([phi2.nRot, phi2.headDim], [32, 80]);
        const linear = ropeParamsFromGguf({...llama, llama: {...llama.llama, rope: {dimension_count: 8, scaling: {type: "linear", factor: 4}}}});
        assert.equal(linear.freqScale, 0.25);

        const refuses = (metadata: object, pattern: RegExp) => assert.throws(() => ropeParamsFromGguf(metadata), (error: unknown) =>
            error instanceof RopeUnsupportedError && pattern.test(error.message));
        refuses({...llama, llama: {...llama.llama, rope: {scaling: {type: "yarn", factor: 4}}}}, /yarn/);
        refuses({...llama, llama: {...llama.llama, rope: {scaling: {type: "linear", attn_factor: 1.2}}}}, /attention factor/);
        refuses({...llama, llama: {...llama.llama, attention: {head_count: 8, sliding_window: 4096}}}, /sliding-window/);
        refuses({general: {architecture: "gemma3"}, gemma3: {}}, /gemma3.*sliding-window/);
        refuses({general: {architecture: "qwen2vl"}, qwen2vl: {}}, /M-RoPE/);
        refuses({general: {architecture: "llama4"}, llama4: {}}, /no RoPE/);
        refuses({general: {architecture: "mysterymodel"}, mysterymodel: {}}, /not been checked/);
        refuses({general: {}}, /no general.architecture/);
        refuses({...llama, llama: {...llama.llama, attention: {head_count: [8, 4]}}}, /differs per layer/);

        const withFreqs = {metadata: llama, tensorInfo: [{name: "token_embd.weight"}, {name: "rope_freqs.weight"}]};
        assert.throws(() => ropeParamsFromGguf(withFreqs), /rope_freqs\.weight/);
        const factors = Float32Array.from([1, 1, 2, 4]);
        assert.equal(ropeParamsFromGguf(withFreqs, {freqFactors: factors}).freqFactors, factors);
        assert.throws(() => ropeParamsFromGguf({metadata: llama, tensorInfo: [{name: "rope_factors_long.weight"}]}), /LongRoPE/);
    });
});

// ---------------------------------------------------------------------------------------------------------------

type AddonContextPrivate = {
    removeTokenCellsFromSequence(sequenceId: number, startPos: number, endPos: number): boolean;
    shiftSequenceTokenCells(sequenceId: number, startPos: number, endPos: number, shiftDelta: number): void;
};
const addon = (context: LlamaContext) => (context as unknown as {_ctx: AddonContextPrivate})._ctx;
const sequenceIdOf = (sequence: LlamaContextSequence) => (sequence as unknown as {_sequenceId: number})._sequenceId;

type Setup = {name: string, flashAttention: boolean, sequences: number, context: LlamaContext, sequence: LlamaContextSequence};


/** K rows of layer `il` as f32, one array per cell, looked up by position. */
function keysByPosition(body: KvBody, il: number): Map<number, Float32Array> {
    const k = body.layers[il]!.k;
    assert.equal(k.type, ggmlTypeF16);
    const all = f16ToF32(new Uint16Array(new Uint8Array(k.rows).buffer));
    const elems = k.rowSize / 2;
    return new Map(body.cells.map((cell, index) => [cell.pos, all.subarray(index * elems, (index + 1) * elems)]));
}

describe("sequence state blobs on stories260K (real weights, CPU)", () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let llama: Llama;
    let model: LlamaModel;
    let rope: RopeParams;
    const setups: Setup[] = [];
    let fileCounter = 0;

    before(async () => {
        temp = await makeTempDir("weft-kvblob-");
        llama = await getLlama({gpu: false, maxThreads: testThreads, logLevel: LlamaLogLevel.error});
        model = await llama.loadModel({modelPath: stories260kPath});
        rope = ropeParamsFromGguf(model.fileInfo);
        for (const [flashAttention, sequences] of [[false, 1], [true, 1], [false, 2]] as const) {
            const context = await model.createContext({contextSize: 512, threads: testThreads, sequences, flashAttention});
            setups.push({name: `flash attention ${flashAttention ? "on" : "off"}, ${sequences} sequence(s)`, flashAttention, sequences, context, sequence: context.getSequence()});
        }
    });

    after(async () => {
        for (const setup of setups)
            await setup.context.dispose();
        await model?.dispose();
        await temp.cleanup();
    });

    const tempFile = () => path.join(temp.dir, `state-${fileCounter++}.bin`);

    async function evaluateAlone(setup: Setup, tokens: Token[]) {
        await setup.sequence.clearHistory();
        await setup.sequence.evaluateWithoutGeneratingNewTokens(tokens);
        return save(setup);
    }

    async function save(setup: Setup) {
        const file = tempFile();
        await setup.sequence.saveStateToFile(file);
        const bytes = await readFile(file);
        return {bytes, state: parseSeqStateFile(bytes)};
    }

    /** Loads `body` through the file form; `tokens` sets node-llama-cpp's next position (tokens.length). */
    async function load(setup: Setup, tokens: ArrayLike<number>, body: KvBody): Promise<void> {
        const file = tempFile();
        await writeFile(file, serializeSeqStateFile(tokens, body));
        await setup.sequence.loadStateFromFile(file, {acceptRisk: true});
    }

    /** Evaluates `tokens` on the sequence as it stands; returns the full logits after the last one. */
    function logitsAfter(setup: Setup, tokens: Token[]): Promise<Float64Array> {
        return logitsOf(setup.sequence, model.fileInfo.metadata.tokenizer.ggml.tokens.length, tokens);
    }

    const chunkText = "The little dog ran to the park and saw a big red ball.";

    it("parses and re-serializes real saved states byte for byte (v_trans 0 and 1, 1 and 2 streams, empty)", async (t) => {
        const tokens = model.tokenize(chunkText, true);
        for (const setup of setups) {
            const {bytes, state} = await evaluateAlone(setup, tokens);
            assert.equal(state.body.vTrans, !setup.flashAttention);
            assert.equal(state.body.nStream, setup.sequences);
            assert.equal(state.body.cells.length, tokens.length);
            assert.deepEqual(state.body.cells.map((cell) => cell.pos), tokens.map((_, i) => i));
            assert.deepEqual(Array.from(state.tokens), tokens);
            assert.equal(state.body.layers.length, 5);
            assert.deepEqual(Buffer.from(serializeSeqState(state)), bytes);
            const layer = state.body.layers[0]!;
            t.diagnostic(`${setup.name}: ${bytes.byteLength} bytes, K ${layer.k.type}/${layer.k.rowSize}B, V ${JSON.stringify({...layer.v, rows: undefined, data: undefined})}`);

            // The in-memory form carries the same body behind its own header.
            const memory = serializeSeqStateMemory(3, state.body);
            const parsed = parseSeqStateMemory(memory);
            assert.equal(parsed.seqId, 3);
            assert.deepEqual(Buffer.from(serializeKvBody(parsed.body)), Buffer.from(serializeKvBody(state.body)));
            assert.equal(parseSeqState(memory).form, "memory");
        }

        const empty = await evaluateAlone(setups[0]!, []);
        assert.deepEqual(empty.state.body.cells, []);
        assert.deepEqual(Buffer.from(serializeSeqState(empty.state)), empty.bytes);
        t.diagnostic(`empty sequence: ${empty.bytes.byteLength} bytes (n_stream and a zero cell count only)`);
    });

    it("splits a state and concatenates it back byte for byte, and the result loads to identical logits", async () => {
        const first = model.tokenize("Once upon a time, there was a little girl named Lily.", true);
        const second = model.tokenize(" She loved to play with her toys.", false);
        const next = model.tokenize(" One day", false);
        for (const setup of setups) {
            const {state} = await evaluateAlone(setup, [...first, ...second]);
            const parts = [sliceCells(state.body, 0, first.length), sliceCells(state.body, first.length, state.body.cells.length)];
            const joined = concatBlobs(parts, 0);
            assert.deepEqual(Buffer.from(serializeKvBody(joined)), Buffer.from(serializeKvBody(state.body)));

            await load(setup, state.tokens, state.body);
            const original = await logitsAfter(setup, next);
            await load(setup, state.tokens, joined);
            const rejoined = await logitsAfter(setup, next);
            assert.deepEqual(rejoined, original);
        }
    });

    it("moves a chunk by rope-shift as if it had been evaluated at that offset", async (t) => {
        const chunk = model.tokenize(chunkText, false);
        const next = model.tokenize(" Then", false);
        const offset = 37;
        const filler = Array.from({length: offset}, (_, i) => model.tokenize("abcdefgh"[i % 8]!, false)[0]!);

        for (const setup of setups.slice(0, 2)) {
            // Reference: the chunk evaluated fresh at positions offset.., attending only to itself (the filler's
            // cells are removed before the chunk is evaluated, so node-llama-cpp still counts offset tokens).
            await setup.sequence.clearHistory();
            await setup.sequence.evaluateWithoutGeneratingNewTokens(filler);
            assert.ok(addon(setup.context).removeTokenCellsFromSequence(sequenceIdOf(setup.sequence), 0, offset));
            await setup.sequence.evaluateWithoutGeneratingNewTokens(chunk);
            const fresh = (await save(setup)).state.body;
            assert.deepEqual(fresh.cells.map((cell) => cell.pos).sort((a, b) => a - b), chunk.map((_, i) => offset + i));
            const freshLogits = await logitsAfter(setup, next);

            // Ours: the chunk evaluated alone at 0.., its K rows rotated by the offset in TypeScript.
            const alone = (await evaluateAlone(setup, chunk)).state.body;
            const moved = ropeShiftBody(alone, offset, rope);
            assert.deepEqual(moved.cells.map((cell) => cell.pos), chunk.map((_, i) => offset + i));
            await load(setup, [...filler, ...chunk], moved);
            const movedLogits = await logitsAfter(setup, next);

            // llama.cpp's own K-shift (seq_add, applied at the next decode) on the same unshifted chunk.
            await load(setup, [...filler, ...chunk], alone);
            addon(setup.context).shiftSequenceTokenCells(sequenceIdOf(setup.sequence), 0, chunk.length, offset);
            const nativeLogits = await logitsAfter(setup, next);
            const native = (await save(setup)).state.body;

            const kl = klDivergence(freshLogits, movedLogits);
            const logitDiff = maxAbsDiff(freshLogits, movedLogits);
            assert.ok(kl < 1e-4, `KL ${kl}`);
            assert.equal(argmax(movedLogits), argmax(freshLogits));
            assert.ok(logitDiff < 0.05, `max |logit diff| ${logitDiff}`);

            // K rows: ours vs fresh within f16 rounding, in ulp of each head's largest value. Layer 0's input is the
            // token embedding alone, so only RoPE and rounding differ there; deeper layers also carry the rounding of
            // the attention that produced their input. Ours vs llama.cpp's shift: the same f32 math, so at most 1 ulp
            // of the element itself on a few elements (FMA or libm differences).
            const layerUlp: number[] = [];
            let nativeUlp = 0, nativeDiffering = 0, compared = 0;
            for (let il = 0; il < moved.layers.length; il++) {
                const ours = keysByPosition(moved, il), theirs = keysByPosition(fresh, il), shifted = keysByPosition(native, il);
                let worst = 0;
                for (const [pos, row] of ours) {
                    const reference = theirs.get(pos)!;
                    for (let head = 0; head < row.length; head += rope.headDim) {
                        const scale = Math.max(...Array.from(reference.subarray(head, head + rope.headDim), Math.abs));
                        const ulp = 2 ** (Math.floor(Math.log2(scale)) - 10);
                        worst = Math.max(worst, maxAbsDiff(row.subarray(head, head + rope.headDim), reference.subarray(head, head + rope.headDim)) / ulp);
                    }
                    const oursBits = f32ToF16(row), nativeBits = f32ToF16(shifted.get(pos)!);
                    oursBits.forEach((bits, i) => {
                        compared++;
                        if (bits !== nativeBits[i]) {
                            nativeDiffering++;
                            nativeUlp = Math.max(nativeUlp, Math.abs(bits - nativeBits[i]!));
                        }
                    });
                }
                layerUlp.push(worst);
            }
            assert.ok(layerUlp[0]! <= 2, `layer 0 K rows differ from the fresh evaluation by ${layerUlp[0]} ulp`);
            assert.ok(Math.max(...layerUlp) <= 8, `K rows differ from the fresh evaluation by ${layerUlp} ulp per layer`);
            assert.ok(nativeUlp <= 1 && nativeDiffering <= compared / 100, `${nativeDiffering} of ${compared} elements differ from llama.cpp's shift, by up to ${nativeUlp} ulp`);
            const nativeKl = klDivergence(freshLogits, nativeLogits);
            t.diagnostic(`${setup.name}: moved vs fresh KL ${kl.toExponential(2)}, max |logit diff| ${logitDiff.toExponential(2)}; ` +
                `K rows vs fresh per layer ${layerUlp.join("/")} f16 ulp (of the head's scale); vs llama.cpp's K-shift ${nativeDiffering}/${compared} ` +
                `elements differ (max ${nativeUlp} ulp), its logits KL vs fresh ${nativeKl.toExponential(2)}, vs ours ${klDivergence(nativeLogits, movedLogits).toExponential(2)}`);
        }
    });

    it("concatenates two chunks computed alone, with nothing recomputed, into a usable sequence", async (t) => {
        const first = model.tokenize("Once upon a time, there was a little girl named Lily.", true);
        const second = model.tokenize(" She loved to play with her toys.", false);
        const next = model.tokenize(" One day", false);
        for (const setup of setups) {
            const a = (await evaluateAlone(setup, first)).state.body;
            const b = (await evaluateAlone(setup, second)).state.body;
            const blended = concatBlobs([a, ropeShiftBody(b, first.length, rope)], 0);
            assert.deepEqual(blended.cells.map((cell) => cell.pos), [...first, ...second].map((_, i) => i));

            await setup.sequence.clearHistory();
            const fullLogits = await logitsAfter(setup, [...first, ...second, ...next]);

            await load(setup, [...first, ...second], blended);
            let logits = await logitsAfter(setup, next);
            assert.ok(logits.every(Number.isFinite));
            const kl = klDivergence(fullLogits, logits);
            assert.equal(argmax(logits), argmax(fullLogits), "the blended prompt predicts the same next token as a full prefill");
            assert.ok(kl < 0.01, `KL vs full prefill ${kl}`);
            const logitDiff = maxAbsDiff(fullLogits, logits);

            const continuation: Token[] = [];
            for (let i = 0; i < 12; i++) {
                const token = argmax(logits) as Token;
                continuation.push(token);
                logits = await logitsAfter(setup, [token]);
                assert.ok(logits.every(Number.isFinite));
            }
            const text = model.detokenize(continuation);
            const words = text.match(/[A-Za-z]+/g) ?? [];
            assert.ok(words.length >= 3 && /^[\w\s.,!?'"-]+$/.test(text), `implausible continuation ${JSON.stringify(text)}`);
            t.diagnostic(`${setup.name}: blended vs full prefill KL ${kl.toExponential(2)}, max |logit diff| ${logitDiff.toFixed(3)}; greedy: ${JSON.stringify(text)}`);
        }
    });

    it("rejects what it does not support, with a clear error", async () => {
        const tokens = model.tokenize(chunkText, true);
        const {bytes, state} = await evaluateAlone(setups[0]!, tokens);
        const bodyBytes = serializeKvBody(state.body);
        const rejects = (fn: () => unknown, pattern: RegExp) => assert.throws(fn, (error: unknown) =>
            error instanceof KvBlobError && pattern.test(error.message), `expected ${pattern}`);

        rejects(() => parseSeqState(new Uint8Array(16)), /unknown magic/);
        rejects(() => parseSeqStateMemory(bytes), /not an in-memory sequence state/);
        rejects(() => parseSeqStateFile(bytes.subarray(0, bytes.byteLength - 1)), /truncated/);
        const wrongVersion = Buffer.from(bytes);
        wrongVersion.writeUInt32LE(2, 4);
        rejects(() => parseSeqStateFile(wrongVersion), /version 2/);

        // A quantized K type (q8_0) at layer 0.
        const cellBytes = state.body.cells.length * 12; // pos, n_seq_id, one seq_id
        const quantized = Buffer.from(bodyBytes);
        quantized.writeInt32LE(8, 8 + cellBytes + 8);
        rejects(() => parseKvBody(quantized), /unsupported KV tensor type q8_0/);

        // Trailing bytes: a second memory module (iSWA or hybrid models write two caches).
        rejects(() => parseKvBody(Buffer.concat([bodyBytes, Buffer.alloc(8)])), /more than one memory module/);

        // Two non-empty streams (a whole-context dump, not a sequence).
        const stream = bodyBytes.subarray(4);
        const twoStreams = Buffer.concat([Buffer.from([2, 0, 0, 0]), stream, stream]);
        rejects(() => parseKvBody(twoStreams), /only one sequence per blob/);

        // M-RoPE / PLE cells carry 12 more bytes each: the layout no longer adds up.
        const withExt: Buffer[] = [Buffer.from(bodyBytes.subarray(0, 8))];
        for (let i = 0; i < state.body.cells.length; i++) {
            const cell = bodyBytes.subarray(8 + 12 * i, 8 + 12 * i + 12);
            const ext = Buffer.alloc(12);
            ext.writeInt32LE(tokens[i]!, 8);
            withExt.push(Buffer.from(cell.subarray(0, 8)), ext, Buffer.from(cell.subarray(8)));
        }
        withExt.push(Buffer.from(bodyBytes.subarray(8 + cellBytes)));
        assert.throws(() => parseKvBody(Buffer.concat(withExt)), KvBlobError);

        // Bodies from different context settings (V transposed or not) do not concatenate.
        const other = (await evaluateAlone(setups[1]!, tokens)).state.body;
        rejects(() => concatBlobs([state.body, other], 0), /different layouts/);
        rejects(() => withPositions(state.body, [1, 2]), /positions for/);
        rejects(() => sliceCells(state.body, 3, 2), /cannot slice/);
    });
});

