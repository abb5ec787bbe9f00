// The native splice (native/src/kv_splice.cpp) against the TypeScript reference (ropeShiftBody + concatBlobs +
// loadSequenceState) on stories260K, both V layouts: the state llama.cpp holds afterwards must be the same, element
// for element up to f16 rounding of the rotation, and the next-token logits must agree. Bad plans are refused with a
// clear error and leave the sequence usable.
import assert from "node:assert/strict";
import {spawnSync} from "node:child_process";
import {fileURLToPath} from "node:url";
import {after, before, describe, it} from "node:test";
import {getLlama, type Llama, type LlamaContext, type LlamaContextSequence, LlamaLogLevel, type LlamaModel, type Token} from "node-llama-cpp";
import {isTransposed, KvBlobError, type KvBody, parseSeqStateMemory, serializeSeqStateMemory, sliceCells} from "../../main/engine/kv/kv-blob.js";
import {f16ToF32, floatToHalf, halfToFloat} from "../helpers/f16.js";
import {
    captureLayerKV, getContextSequenceState, kvDeviation, loadNativeAddon, loadSequenceState, sequenceIdOf, spliceSequenceState,
    withContextLock
} from "../../main/engine/native/native-addon.js";
import {type RopeParams, ropeParamsFromGguf} from "../../main/engine/kv/rope-params.js";
import {spliceIntoSequence, spliceRopeOf, spliceSpecOf} from "../../main/engine/blend/splice.js";
import type {CodedChunk} from "../../main/engine/kv/chunk-container.js";
import {decodeKvBody, encodeKvBody} from "../../main/engine/kv/kv-codec.js";
import {stories260kPath, testThreads} from "../helpers/paths.js";
import {concatBlobs, referenceKvDeviation, ropeShiftBody} from "../helpers/kv-reference.js";
import {logitsAfter as logitsOf} from "../helpers/logits.js";

/** This process's environment without the test runner's own marker, so a child test run reports in TAP. */
function childEnv(): NodeJS.ProcessEnv {
    const env = {...process.env};
    delete env.NODE_TEST_CONTEXT;
    return env;
}

type Setup = {name: string, context: LlamaContext, sequence: LlamaContextSequence};

const addonLoad = loadNativeAddon();

describe("native KV splice on stories260K (CPU)", {skip: addonLoad.available ? false : addonLoad.reason}, () => {
    let llama: Llama;
    let model: LlamaModel;
    let rope: RopeParams;
    const setups: Setup[] = [];

    before(async () => {
        llama = await getLlama({gpu: false, maxThreads: testThreads, build: "never", logLevel: LlamaLogLevel.error});
        model = await llama.loadModel({modelPath: stories260kPath});
        rope = ropeParamsFromGguf(model.fileInfo);
        for (const flashAttention of [true, false]) {
            const context = await model.createContext({contextSize: 256, threads: testThreads, flashAttention});
            setups.push({name: flashAttention ? "flash attention (V rows)" : "no flash attention (V transposed)", context, sequence: context.getSequence()});
        }
    });

    after(async () => {
        for (const setup of setups)
            await setup.context.dispose();
        await model?.dispose();
    });

    async function stateOf(setup: Setup): Promise<Buffer> {
        return getContextSequenceState(setup.context, sequenceIdOf(setup.sequence));
    }

    async function evaluateAlone(setup: Setup, tokens: Token[]): Promise<KvBody> {
        await setup.sequence.clearHistory();
        await setup.sequence.evaluateWithoutGeneratingNewTokens(tokens);
        return parseSeqStateMemory(await stateOf(setup)).body;
    }

    function logitsAfter(setup: Setup, tokens: Token[]): Promise<Float64Array> {
        return logitsOf(setup.sequence, model.fileInfo.metadata.tokenizer.ggml.tokens.length, tokens);
    }

    /** A header and two chunks, each computed alone (chunks after a BOS whose cell is dropped, as chunkKv does). */
    async function pieces(setup: Setup) {
        const bos = model.tokens.bos!;
        const header = model.tokenize("A story.", true);
        const chunkA = model.tokenize(" Once upon a time, there was a little girl named Lily.", false);
        const chunkB = model.tokenize(" She loved to play with her big red ball in the park.", false);
        const headerBody = await evaluateAlone(setup, header);
        const a = await evaluateAlone(setup, [bos, ...chunkA]);
        const b = await evaluateAlone(setup, [bos, ...chunkB]);
        const parts = [
            {body: headerBody, delta: 0},
            {body: sliceCells(a, 1, a.cells.length), delta: header.length - 1},
            {body: sliceCells(b, 1, b.cells.length), delta: header.length + chunkA.length - 1}
        ];
        return {parts, tokens: [...header, ...chunkA, ...chunkB]};
    }

    it("builds the same sequence state as the TypeScript reference, and the same next-token logits", async (t) => {
        const next = model.tokenize(" One day", false);
        for (const setup of setups) {
            const {parts, tokens} = await pieces(setup);
            const seqId = sequenceIdOf(setup.sequence);

            const reference = concatBlobs(parts.map(({body, delta}) => ropeShiftBody(body, delta, rope)), seqId, {nStream: parts[0]!.body.nStream});
            await loadSequenceState(setup.sequence, serializeSeqStateMemory(seqId, reference), tokens);
            const referenceState = parseSeqStateMemory(await stateOf(setup)).body;
            const referenceLogits = await logitsAfter(setup, next);

            const result = await spliceIntoSequence(setup.sequence, parts, tokens, rope, {threads: 1});
            assert.equal(setup.sequence.contextTokens.length, tokens.length, "node-llama-cpp's token list follows the splice");
            assert.equal(result.pinned, false, "no GPU backend: no pinned memory");
            assert.equal(result.bytesRead, result.blobBytes);
            // a host cache takes the rows in place, except transposed V (a blob, loaded by llama_state_seq_set_data)
            assert.equal(result.inPlace, !reference.vTrans, setup.name);
            const nativeState = parseSeqStateMemory(await stateOf(setup)).body;
            const nativeLogits = await logitsAfter(setup, next);

            assert.deepEqual(nativeState.cells, referenceState.cells);
            assert.equal(nativeState.vTrans, referenceState.vTrans);
            let differing = 0, compared = 0, worstUlp = 0;
            nativeState.layers.forEach((layer, il) => {
                const ref = referenceState.layers[il]!;
                assert.deepEqual(Buffer.from("rows" in layer.v ? layer.v.rows : layer.v.data), Buffer.from("rows" in ref.v ? ref.v.rows : ref.v.data), `layer ${il} V`);
                const ours = new Uint16Array(layer.k.rows.buffer.slice(layer.k.rows.byteOffset, layer.k.rows.byteOffset + layer.k.rows.byteLength));
                const theirs = new Uint16Array(ref.k.rows.buffer.slice(ref.k.rows.byteOffset, ref.k.rows.byteOffset + ref.k.rows.byteLength));
                assert.equal(ours.length, theirs.length);
                for (let i = 0; i < ours.length; i++) {
                    compared++;
                    if (ours[i] !== theirs[i]) {
                        differing++;
                        worstUlp = Math.max(worstUlp, Math.abs(ours[i]! - theirs[i]!));
                        assert.ok(Math.abs(halfToFloat(ours[i]!) - halfToFloat(theirs[i]!)) <= 2e-3 * Math.max(1, Math.abs(halfToFloat(theirs[i]!))));
                    }
                }
            });
            // cosf/sinf may differ from JavaScript's Math.cos/sin rounded to f32 in the last bit, which can flip an
            // f16 rounding now and then; anything more is a bug.
            assert.ok(worstUlp <= 1 && differing <= compared / 100, `${differing} of ${compared} K elements differ, by up to ${worstUlp} f16 ulp`);
            let maxDiff = 0;
            for (let i = 0; i < nativeLogits.length; i++)
                maxDiff = Math.max(maxDiff, Math.abs(nativeLogits[i]! - referenceLogits[i]!));
            assert.ok(maxDiff < 1e-3, `max |logit diff| native vs reference ${maxDiff}`);
            t.diagnostic(`${setup.name}: ${result.blobBytes} bytes ${result.inPlace ? "in place" : "through a blob"}; K elements differing from the reference ${differing}/${compared} ` +
                `(max ${worstUlp} ulp); max |logit diff| ${maxDiff.toExponential(2)}; build ${result.buildMs.toFixed(2)} ms, set ${result.setMs.toFixed(2)} ms`);
        }
    });

    it("puts a layer's exact rows (hkvd's capture) in place of the cached ones, in both V layouts", async (t) => {
        for (const setup of setups) {
            const {parts, tokens} = await pieces(setup);
            const captured = await captureLayerKV(model, tokens, 1, {contextSize: 64, threads: testThreads, flashAttention: setup === setups[0]});
            await spliceIntoSequence(setup.sequence, parts, tokens, rope, {threads: 1});
            const plain = parseSeqStateMemory(await stateOf(setup)).body;
            await spliceIntoSequence(setup.sequence, parts, tokens, rope, {threads: 2, overrides: [{layer: 1, k: captured.k, v: captured.v}]});
            const exact = parseSeqStateMemory(await stateOf(setup)).body;

            assert.deepEqual(exact.cells, plain.cells);
            exact.layers.forEach((layer, il) => {
                if (il === 1)
                    return;
                assert.deepEqual(Buffer.from(layer.k.rows), Buffer.from(plain.layers[il]!.k.rows), `layer ${il} K is untouched`);
            });
            const k = f16ToF32(new Uint16Array(exact.layers[1]!.k.rows.slice().buffer));
            const v1 = exact.layers[1]!.v;
            const v = f16ToF32(new Uint16Array((isTransposed(v1) ? v1.data : v1.rows).slice().buffer));
            const n = exact.cells.length;
            exact.cells.forEach((cell, c) => {
                for (let i = 0; i < captured.nEmbdK; i++)
                    assert.equal(k[c * captured.nEmbdK + i], halfToFloat(floatToHalf(captured.k[cell.pos * captured.nEmbdK + i]!)));
                for (let i = 0; i < captured.nEmbdV; i++)
                    assert.equal(isTransposed(v1) ? v[i * n + c] : v[c * captured.nEmbdV + i], halfToFloat(floatToHalf(captured.v[cell.pos * captured.nEmbdV + i]!)));
            });
            const plainK = f16ToF32(new Uint16Array(plain.layers[1]!.k.rows.slice().buffer));
            const changed = k.filter((value, i) => value !== plainK[i]).length;
            assert.ok(changed > 0, "the chunks' own layer-1 K differs from the exact one somewhere");
            t.diagnostic(`${setup.name}: ${changed}/${k.length} layer-1 K elements replaced by their exact values`);
        }
    });

    it("gives the same result on the scalar f16 path (CPUs without F16C)", {skip: process.env.WEFT_NO_F16C === "1"}, () => {
        // The same tests in a child process whose addon may not use F16C: the scalar conversions must round alike.
        const child = spawnSync(process.execPath, ["--import", "tsx", "--test", "--test-name-pattern=TypeScript reference|exact rows",
            fileURLToPath(import.meta.url)], {env: {...childEnv(), WEFT_NO_F16C: "1"}, encoding: "utf8", timeout: 120_000});
        assert.equal(child.status, 0, `${child.stdout}\n${child.stderr}`);
        assert.match(child.stdout, /# pass [1-9]/, child.stdout);
        assert.match(child.stdout, /# fail 0/, child.stdout);
    });

    it("gives the same bytes with several threads as with one", async () => {
        const setup = setups[0]!;
        const {parts, tokens} = await pieces(setup);
        await spliceIntoSequence(setup.sequence, parts, tokens, rope, {threads: 1});
        const one = await stateOf(setup);
        await spliceIntoSequence(setup.sequence, parts, tokens, rope, {threads: 3});
        assert.deepEqual(await stateOf(setup), one);
    });

    it("scores hkvd deviation natively as the TypeScript reference does", async (t) => {
        for (const setup of setups) {
            const {parts, tokens} = await pieces(setup);
            const layer = 1;
            const captured = await captureLayerKV(model, tokens, layer, {contextSize: 64, threads: testThreads, flashAttention: setup === setups[0]});
            let start = parts[0]!.body.cells.length;
            const chunks = parts.slice(1).map(({body, delta}) => {
                const placed = {start, body, delta};
                start += body.cells.length;
                return placed;
            });
            const first = chunks[0]!.body.layers[layer]!;
            const scores = await kvDeviation({
                capturedK: captured.k, capturedV: captured.v, nEmbdK: captured.nEmbdK, nEmbdV: captured.nEmbdV,
                kType: first.k.type, vType: first.v.type, vTrans: isTransposed(first.v), rope: spliceRopeOf(rope),
                chunks: chunks.map(({start: at, body, delta}) => {
                    const rows = body.layers[layer]!;
                    return {start: at, cellCount: body.cells.length, delta, k: rows.k.rows, v: isTransposed(rows.v) ? rows.v.data : rows.v.rows};
                })
            });

            // Reference: rotate K in TypeScript, read V in either layout, sum squared differences.
            const expected = referenceKvDeviation(chunks, layer, rope, captured);
            assert.equal(scores.length, expected.length);
            expected.forEach((value, i) => assert.ok(Math.abs(scores[i]! - value) <= 1e-4 * Math.max(1, value), `cell ${i}: ${scores[i]} vs ${value}`));
            assert.ok(expected.some((value) => value > 1e-3), "chunks computed alone deviate from the whole prefix somewhere");
            t.diagnostic(`${setup.name}: ${scores.length} scores, max ${Math.max(...expected).toFixed(3)}`);
        }
    });

    it("holds node-llama-cpp's own context lock: its erasures wait for the addon's work", async () => {
        const setup = setups[0]!;
        await setup.sequence.clearHistory();
        await setup.sequence.evaluateWithoutGeneratingNewTokens(model.tokenize("Once upon a time", true));
        const order: string[] = [];
        const held = withContextLock(setup.context, async () => {
            await new Promise((resolve) => setTimeout(resolve, 100));
            order.push("lock released");
        });
        await setup.sequence.clearHistory();
        order.push("history cleared");
        await held;
        assert.deepEqual(order, ["lock released", "history cleared"]);
    });

    it("decodes coded parts (disk chunks' containers) straight into the cells as their decoded bodies splice; a damaged one is decoded instead", async (t) => {
        const flash = setups[0]!;
        const {parts, tokens} = await pieces(flash);
        const fingerprint = "0".repeat(32);
        const codedOf = async (body: KvBody): Promise<CodedChunk> => {
            const bytes = await encodeKvBody(body, {level: 1, fingerprint, rope, threads: 1});
            return {bytes, tokens: new Int32Array(body.cells.length), firstPos: body.cells[0]!.pos, codecLevel: 1, f16Bytes: 0};
        };
        const coded = [await codedOf(parts[1]!.body), await codedOf(parts[2]!.body)];
        const decoded = await Promise.all(coded.map(async (chunk) => (await decodeKvBody(chunk.bytes, {fingerprint, threads: 1})).body));
        const next = model.tokenize(" One day", false);

        await spliceIntoSequence(flash.sequence, [parts[0]!, {body: decoded[0]!, delta: parts[1]!.delta}, {body: decoded[1]!, delta: parts[2]!.delta}],
            tokens, rope, {threads: 1});
        const viaBodies = parseSeqStateMemory(await stateOf(flash)).body;
        const bodyLogits = await logitsAfter(flash, next);
        const codedParts = [parts[0]!, {coded: coded[0]!, delta: parts[1]!.delta}, {coded: coded[1]!, delta: parts[2]!.delta}];
        const result = await spliceIntoSequence(flash.sequence, codedParts, tokens, rope, {threads: 2, codedFingerprint: fingerprint});
        assert.ok(result.inPlace);
        assert.equal(result.codedBytes, decoded.reduce((sum, body) => sum + body.layers.reduce((s, l) => s + l.k.rows.byteLength + (l.v as {rows: Uint8Array}).rows.byteLength, 0), 0));
        const viaCoded = parseSeqStateMemory(await stateOf(flash)).body;
        const codedLogits = await logitsAfter(flash, next);

        assert.deepEqual(viaCoded.cells, viaBodies.cells);
        let differing = 0, compared = 0;
        viaCoded.layers.forEach((layer, il) => {
            const ref = viaBodies.layers[il]!;
            assert.deepEqual(Buffer.from((layer.v as {rows: Uint8Array}).rows), Buffer.from((ref.v as {rows: Uint8Array}).rows), `layer ${il} V`);
            const ours = f16ToF32(new Uint16Array(layer.k.rows.slice().buffer)), theirs = f16ToF32(new Uint16Array(ref.k.rows.slice().buffer));
            const width = layer.k.rowSize / 2;
            for (let i = 0; i < ours.length; i++) {
                compared++;
                // K turned once to its cells' positions, against turned to 1.. (rounded to f16) and then moved: a
                // rotation mixes each pair's rounding, so the bound is two f16 units of the row's largest value
                if (ours[i] !== theirs[i]) {
                    differing++;
                    const row = theirs.subarray(i - (i % width), i - (i % width) + width);
                    const largest = row.reduce((max, value) => Math.max(max, Math.abs(value)), 0);
                    assert.ok(Math.abs(ours[i]! - theirs[i]!) <= 2 * 2 ** -10 * largest, `layer ${il} K element ${i}: ${ours[i]} vs ${theirs[i]} (row's largest ${largest})`);
                }
            }
        });
        let maxDiff = 0;
        for (let i = 0; i < codedLogits.length; i++)
            maxDiff = Math.max(maxDiff, Math.abs(codedLogits[i]! - bodyLogits[i]!));
        assert.ok(maxDiff < 1e-2, `max |logit diff| coded vs decoded bodies ${maxDiff}`);
        t.diagnostic(`K elements differing ${differing}/${compared}; max |logit diff| ${maxDiff.toExponential(2)}; decode in the splice ${result.codedMs.toFixed(2)} ms`);

        // One damaged byte in a layer: refused by its checksum with the part named, the sequence cleared...
        const damaged = {...coded[1]!, bytes: Uint8Array.from(coded[1]!.bytes)};
        damaged.bytes[damaged.bytes.byteLength - 20]! ^= 0x40;
        const bad = [parts[0]!, {coded: coded[0]!, delta: parts[1]!.delta}, {coded: damaged, delta: parts[2]!.delta}];
        await assert.rejects(spliceIntoSequence(flash.sequence, bad, tokens, rope, {threads: 1, codedFingerprint: fingerprint}), /coded part 2: checksum/);
        assert.equal(flash.sequence.contextTokens.length, 0);
        // ...and, given the cache's own decode to fall back on, spliced from rows instead (here: the decoded bodies).
        const decodeInstead = async (chunk: CodedChunk) => decoded[chunk === damaged ? 1 : 0]!;
        const fallback = await spliceIntoSequence(flash.sequence, bad, tokens, rope, {threads: 1, codedFingerprint: fingerprint, decodeInstead});
        assert.equal(fallback.codedBytes, 0);
        assert.deepEqual(parseSeqStateMemory(await stateOf(flash)).body.layers[3]!.k.rows, viaBodies.layers[3]!.k.rows);
        // Another model's container is refused before any cell is taken.
        await assert.rejects(spliceIntoSequence(flash.sequence, codedParts, tokens, rope, {threads: 1, codedFingerprint: "1".repeat(32)}),
            /coded part 1: wrong-model/);
    });

    it("refuses bad plans with a clear error and the sequence keeps working", async () => {
        const [flash, plain] = setups as [Setup, Setup];
        const {parts, tokens} = await pieces(flash);
        const other = (await pieces(plain)).parts;
        assert.throws(() => spliceSpecOf([parts[0]!, other[1]!], rope, {threads: 1}),
            (error: unknown) => error instanceof KvBlobError && /different layouts/.test(error.message));

        const spec = spliceSpecOf(parts, rope, {threads: 1});
        const truncated = {...spec, parts: spec.parts.map((part, i) => i === 1 && "k" in part
            ? {...part, k: part.k.map((rows, il) => il === 2 ? rows.subarray(0, rows.byteLength - 2) : rows)}
            : part)};
        await assert.rejects(spliceSequenceState(flash.sequence, truncated, tokens), /part.*layer 2 K holds \d+ bytes, expected \d+/);
        assert.equal(flash.sequence.contextTokens.length, 0, "a refused splice leaves the sequence empty");

        const tooLong = {...spec, parts: Array.from({length: 40}, () => spec.parts[1]!)};
        await assert.rejects(spliceSequenceState(flash.sequence, tooLong, tokens.slice(0, 10)), /do not fit the context/);

        // Still serving: a plain evaluation works, and a good splice after the bad ones too.
        await flash.sequence.evaluateWithoutGeneratingNewTokens(model.tokenize("Once upon a time", true));
        await spliceIntoSequence(flash.sequence, parts, tokens, rope, {threads: 1});
        const logits = await logitsAfter(flash, model.tokenize(" One day", false));
        assert.ok(logits.every(Number.isFinite));
    });
});
