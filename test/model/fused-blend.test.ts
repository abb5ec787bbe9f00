import assert from "node:assert/strict";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {getLlama, type Llama, type LlamaContext, type LlamaContextSequence, type LlamaModel} from "node-llama-cpp";
import {type BlendSession, openBlendSession} from "../../main/engine/blend/blend.js";
import {defaultFocus, nameTokenTest, questionFocus} from "../../main/engine/blend/focus.js";
import {inFocusOrder} from "../../main/engine/blend/focus-order.js";
import {ChunkKvCache} from "../../main/engine/kv/chunk-cache.js";
import {fusedKeep} from "../../main/engine/blend/fused.js";
import {fusedBlendDecode, fusedBlendPhases, fusedBlendSupported} from "../../main/engine/native/native-addon.js";
import {type FusedTrace, prepareFull} from "../../main/engine/blend/prepare.js";
import {buildPrompt, type BuiltPrompt} from "../../main/engine/prompt.js";
import {blendSkipReason, nextLogits, storyQuestion, storySources} from "../helpers/blend-prompt.js";
import {naiveWithExactLayers, promptLayout, referenceDeviation, topIndices} from "../helpers/fused-reference.js";
import {argmax, klDivergence, maxAbsDiff} from "../helpers/logits.js";
import {makeTempDir, stories260kPath, testThreads} from "../helpers/paths.js";

/**
 * Ratio 1.0 recomputes every chunk token through every layer in the fused decode, so its logits differ from a full
 * prefill only by float rounding: measured 3.1e-3 max |diff| here, as chunk-head's scattered decode. The labels' cells
 * are placed between the chunks' (withLabelCells), so attention sums the cells in a prefill's order; with the labels'
 * cells after every chunk cell it was 2.55e-2 (KL 1.2e-5), whatever the check layer or batch size. Logits here span
 * ~30; naive's KL is 2.5e-2, and a stale cell, a wrong position, a wrong mask row or cells out of order move logits by
 * more than 1e-2.
 */
const ratioOneTolerance = 1e-2;
const ratioOneKl = 1e-5;
/**
 * Ratio 0 against the naive blend with layers 0..1 made exact outside the graph (rows from a capture context, one
 * prefill of the prefix): the same values up to the same rounding (measured 1.1e-2); naive without them differs by ~1.
 */
const ratioZeroTolerance = 5e-2;
/** Deviations closer than this (relative) are ties: the graph's f32 sums and the reference's f64 ones may order them either way. */
const tieTolerance = 1e-3;

const skip = blendSkipReason();
/** The selection's own semantics, without the chunks the question is about recomputed whole (focus.ts). */
const noFocus = {count: 0, continuations: false, hops: 0};

describe("hkvd's fused blend decode on stories260K (CPU, patched build, flash attention)", {skip}, () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let llama: Llama;
    let model: LlamaModel;
    let context: LlamaContext;
    let sequence: LlamaContextSequence;
    let blend: BlendSession;
    let prompt: BuiltPrompt;
    let vocabSize: number;
    let fullLogits: Float64Array;

    before(async () => {
        temp = await makeTempDir();
        llama = await getLlama({gpu: false, maxThreads: testThreads, build: "never"});
        model = await llama.loadModel({modelPath: stories260kPath});
        // The patched build carries every native/patches diff (blendSkipReason checks their hashes), 0003 included.
        assert.ok(fusedBlendSupported(), "the loaded llama.cpp lacks llama_weft_blend_decode");
        context = await model.createContext({contextSize: 1024, threads: testThreads, sequences: 1, flashAttention: true});
        sequence = context.getSequence();
        vocabSize = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
        const cache = await ChunkKvCache.open({dataDir: path.join(temp.dir, "data"), ramBudgetBytes: 64 * 1024 ** 2, diskBudgetBytes: 64 * 1024 ** 2});
        const opened = await openBlendSession({llama, model, context, sequence, modelPath: stories260kPath, cache, threads: testThreads});
        assert.ok(opened.available, opened.available ? "" : opened.reason);
        blend = opened.value;
        assert.equal(blend.flashAttention, true);
        prompt = buildPrompt(model, storyQuestion, storySources, false);
        await prepareFull(sequence, prompt.tokens);
        fullLogits = await nextLogits(sequence, prompt.tokens, vocabSize);
    });

    after(async () => {
        await blend?.close();  // chunk KVs the questions computed are stored after them: settle before the context goes
        await context?.dispose();
        await model?.dispose();
        await temp?.cleanup();
    });

    it("ratio 1.0 gives full prefill's logits and greedy token, in one fused decode", async (t) => {
        const prepared = await blend.prepare(prompt, "hkvd", 1);
        assert.equal(prepared.strategy, "hkvd");
        assert.equal(prepared.fallbackReason, undefined);
        const chunkTokens = promptLayout(prompt).chunks.reduce((sum, chunk) => sum + chunk.tokens.length, 0);
        assert.equal(prepared.recomputedTokens, chunkTokens);
        assert.equal(prepared.reusedTokens, 0);
        assert.equal(prepared.selectedPositions?.length, chunkTokens);
        const logits = await nextLogits(sequence, prepared.tokensToEvaluate, vocabSize);
        const diff = maxAbsDiff(logits, fullLogits);
        t.diagnostic(`max |logit diff| vs full: ${diff.toExponential(2)}, KL ${klDivergence(fullLogits, logits).toExponential(2)}`);
        assert.ok(diff < ratioOneTolerance, `max |diff| ${diff}`);
        assert.ok(klDivergence(fullLogits, logits) < ratioOneKl);
        assert.equal(argmax(logits), argmax(fullLogits));
        // No duplicate cells: the sequence holds exactly one cell per prompt position evaluated so far.
        assert.equal(sequence.contextTokens.length, prompt.tokens.length);
    });

    it("takes the first source, the question's focus as the app orders it, as its lead version: full's KV, no repair", async (t) => {
        const {prompt: ordered, order} = inFocusOrder(prompt, storySources, defaultFocus, nameTokenTest(model),
            (sources) => buildPrompt(model, storyQuestion, sources, false));
        assert.ok(order != null && order[0] !== 0, "the focus chunk is not the first source already: the test needs it moved");
        await prepareFull(sequence, ordered.tokens);
        const orderedFull = await nextLogits(sequence, ordered.tokens, vocabSize);
        const chunks = promptLayout(ordered).chunks;
        const chunkTokens = chunks.reduce((sum, chunk) => sum + chunk.tokens.length, 0);

        const prepared = await blend.prepare(ordered, "hkvd", 1);
        assert.deepEqual(prepared.exactSources, [1]);
        assert.equal(prepared.reusedTokens, chunks[0]!.tokens.length, "the first source is reused as computed after its lead");
        assert.equal(prepared.recomputedTokens, chunkTokens - chunks[0]!.tokens.length);
        assert.ok(prepared.selectedPositions!.every((position) => position >= chunks[0]!.start + chunks[0]!.tokens.length));
        const logits = await nextLogits(sequence, prepared.tokensToEvaluate, vocabSize);
        const diff = maxAbsDiff(logits, orderedFull);
        t.diagnostic(`ratio 1.0 with the first source exact: max |logit diff| vs full ${diff.toExponential(2)}`);
        assert.ok(diff < ratioOneTolerance, `max |diff| ${diff}`);
        assert.equal(argmax(logits), argmax(orderedFull));

        // Cached now: without focus, chunk-head at ratio 0 still takes it, and only its K at the check layer matches a
        // full prefill's; the other sources' (reused as computed after a BOS) do not.
        const plain = await blend.prepare(ordered, "chunk-head", 0, {focus: noFocus});
        assert.deepEqual(plain.exactSources, [1]);
        assert.equal(plain.chunkKv?.[0]?.kvSource, "ram");
        const reference = await referenceDeviation(blend, ordered, 1);
        const largest = (values: ArrayLike<number>) => Math.max(...Array.from(values));
        const others = reference.slice(1).map(({deviation}) => largest(deviation));
        t.diagnostic(`largest squared K deviation at layer 1: first source ${largest(reference[0]!.deviation).toExponential(2)}, ` +
            `others ${others.map((value) => value.toExponential(2)).join(", ")}`);
        assert.ok(others.every((value) => value > 0), "a later source matched a full prefill: the check cannot tell them apart");
        assert.ok(largest(reference[0]!.deviation) <= 1e-3 * Math.min(...others));

        // The control: the prompt in retrieval order puts a chunk first that is neither focus nor cached after its lead.
        const retrievalOrder = await blend.prepare(prompt, "chunk-head", 0.15);
        assert.deepEqual(retrievalOrder.exactSources, []);
    });

    it("selects, per chunk, the top share of a deviation computed outside the graph", async (t) => {
        // The cached K the fused decode compares with is what the naive splice leaves in the chunk cells.
        await blend.prepare(prompt, "naive", 0);
        const reference = await referenceDeviation(blend, prompt, 1);
        const ratio = 0.25;
        const prepared = await blend.prepare(prompt, "hkvd", ratio, {focus: noFocus});
        const selected = new Set(prepared.selectedPositions!);
        let compared = 0;
        for (const {start, deviation} of reference) {
            const keep = fusedKeep(deviation.length, ratio);
            const expected = topIndices(deviation, keep);
            const got = Array.from({length: deviation.length}, (_, index) => index).filter((index) => selected.has(start + index));
            assert.equal(got.length, keep, `chunk at ${start}: ${got.length} selected, expected ${keep}`);
            const threshold = deviation[expected.at(-1)!]!;
            for (const index of got)
                if (!expected.includes(index))
                    assert.ok(Math.abs(deviation[index]! - threshold) <= tieTolerance * threshold,
                        `chunk at ${start}: token ${index} (deviation ${deviation[index]}) selected over the reference's top ${keep} (threshold ${threshold})`);
            compared += keep;
        }
        assert.equal(prepared.recomputedTokens, compared);
        t.diagnostic(`compared ${compared} selected tokens in ${reference.length} chunks`);
    });

    it("recomputes whole the chunk that shares the question's rarest tokens, and the rest by their share", async (t) => {
        const chunks = promptLayout(prompt).chunks;
        const focus = questionFocus(chunks, prompt.tokens.slice(promptLayout(prompt).tailStart), defaultFocus, nameTokenTest(model));
        assert.ok(focus.length >= 1, "the story question names something one of its sources says: the test needs a focus chunk");
        const ratio = 0.25;
        const prepared = await blend.prepare(prompt, "hkvd", ratio);
        const selected = new Set(prepared.selectedPositions!);
        // ratio is the share of all chunk tokens: the focus takes its part, the others share the rest (a third of the
        // ratio at least, the ratio at most)
        const lengthOf = (indices: number[]) => indices.reduce((sum, index) => sum + chunks[index]!.tokens.length, 0);
        const others = chunks.map((_, index) => index).filter((index) => !focus.includes(index));
        const share = Math.min(ratio, Math.max(ratio / 3, (ratio * lengthOf(chunks.map((_, index) => index)) - lengthOf(focus)) / lengthOf(others)));
        assert.ok(share < ratio, "the focus takes part of the budget");
        let expected = 0;
        chunks.forEach(({start, tokens}, index) => {
            const got = tokens.filter((_, offset) => selected.has(start + offset)).length;
            const whole = focus.includes(index);
            assert.equal(got, whole ? tokens.length : fusedKeep(tokens.length, share), `chunk ${index}${whole ? " (focus)" : ""}`);
            expected += got;
        });
        assert.equal(prepared.recomputedTokens, expected);
        // The control: without focus the same chunk keeps only its share, and every chunk the whole ratio.
        const plain = await blend.prepare(prompt, "hkvd", ratio, {focus: noFocus});
        const plainSelected = new Set(plain.selectedPositions!);
        for (const index of focus) {
            const {start, tokens} = chunks[index]!;
            assert.ok(tokens.filter((_, offset) => plainSelected.has(start + offset)).length < tokens.length, `focus chunk ${index} without focus`);
        }
        t.diagnostic(`focus chunks ${focus.join(", ")}: ${prepared.recomputedTokens} recomputed, ${plain.recomputedTokens} without focus`);
    });

    it("ratio 0 equals the naive blend with layers 0..1 made exact", async (t) => {
        const prepared = await blend.prepare(prompt, "hkvd", 0, {focus: noFocus});
        assert.equal(prepared.recomputedTokens, 0);
        const fused = await nextLogits(sequence, prepared.tokensToEvaluate, vocabSize);
        const rest = await naiveWithExactLayers(blend, prompt, [0, 1]);
        const reference = await nextLogits(sequence, rest, vocabSize);
        const diff = maxAbsDiff(fused, reference);
        t.diagnostic(`max |logit diff| vs the reference: ${diff.toExponential(2)}; vs full ${maxAbsDiff(fused, fullLogits).toExponential(2)}`);
        assert.ok(diff < ratioZeroTolerance, `max |diff| ${diff}`);
        // The control: the naive blend without the exact layers differs from it by more than the tolerance.
        const naive = await blend.prepare(prompt, "naive", 0);
        const naiveLogits = await nextLogits(sequence, naive.tokensToEvaluate, vocabSize);
        assert.ok(maxAbsDiff(naiveLogits, reference) > ratioZeroTolerance, "naive alone already equals the reference: the test cannot fail");
    });

    it("at 0.15 is closer to full than naive (KL)", async (t) => {
        const naive = await blend.prepare(prompt, "naive", 0);
        const naiveKl = klDivergence(fullLogits, await nextLogits(sequence, naive.tokensToEvaluate, vocabSize));
        const hkvd = await blend.prepare(prompt, "hkvd", 0.15);
        const hkvdKl = klDivergence(fullLogits, await nextLogits(sequence, hkvd.tokensToEvaluate, vocabSize));
        t.diagnostic(`KL vs full: naive ${naiveKl.toExponential(3)}, hkvd@0.15 ${hkvdKl.toExponential(3)} (${hkvd.recomputedTokens} recomputed)`);
        assert.ok(hkvdKl < naiveKl, `hkvd ${hkvdKl} >= naive ${naiveKl}`);
    });

    it("builds the same mask in the graph as on the host: identical selection and logits", async (t) => {
        // On a CPU the fused decode fills its mask on the host ("auto"); a GPU build makes it in the graph from positions.
        // Both are forced here; the selection runs at 0.15 so the subset's own mask rows are exercised too.
        const runs = [];
        for (const fusedMask of ["host", "graph"] as const) {
            const prepared = await blend.prepare(prompt, "hkvd", 0.15, {fusedMask});
            assert.equal(prepared.strategy, "hkvd");
            runs.push({selected: prepared.selectedPositions, logits: await nextLogits(sequence, prepared.tokensToEvaluate, vocabSize)});
        }
        assert.deepEqual(runs[1]!.selected, runs[0]!.selected);
        const diff = maxAbsDiff(runs[1]!.logits, runs[0]!.logits);
        t.diagnostic(`graph vs host mask: max |logit diff| ${diff.toExponential(2)}, ${runs[0]!.selected?.length} selected`);
        assert.equal(diff, 0);
    });

    it("reports each fused decode's host phases to a trace sink", async (t) => {
        let traced: FusedTrace | undefined;
        const prepared = await blend.prepare(prompt, "hkvd", 0.15, {trace: {fused: (fused) => traced = fused, fusedPhases: true}});
        assert.equal(prepared.strategy, "hkvd");
        assert.ok(traced != null && traced.phaseMsEach != null);
        assert.equal(traced.phaseMsEach.length, traced.decodes);
        for (const [index, phases] of traced.phaseMsEach.entries()) {
            assert.equal(phases.length, fusedBlendPhases.length);
            assert.ok(phases.every((ms) => Number.isFinite(ms) && ms >= 0), phases.join(" "));
            const summed = phases.reduce((sum, ms) => sum + ms, 0);
            // the phases tile the decode: their sum is its time inside llama.cpp, within the addon's own timing
            assert.ok(summed > 0 && summed <= traced.decodeMsEach[index]! + 0.5, `phases ${summed} ms, decode ${traced.decodeMsEach[index]} ms`);
            assert.ok(phases[fusedBlendPhases.indexOf("build")]! > 0, "a fused graph is built for every decode");
        }
        t.diagnostic(`phases (${fusedBlendPhases.join("/")}): ${traced.phaseMsEach.map((phases) => phases.map((ms) => ms.toFixed(2)).join("/")).join("  ")}`);
    });

    it("chunk KVs computed at the same time equal the ones computed one after another", async () => {
        // Background warming computes chunks while a question computes its header, on one small context: each
        // computation clears it, evaluates and reads the state, so they must not interleave.
        const texts = [" Ben found a shiny red stone by the river and showed it to his sister.",
            " The old owl sat on the branch and watched the moon rise over the hill.",
            " Mia baked a cake with her dad, and they ate it in the garden."];
        const tokens = texts.map((text) => model.tokenize(text, false));
        const together = await Promise.all(tokens.map((chunk) => blend.chunkKv(chunk)));
        assert.ok(together.every((load) => !load.hit), "the chunks were already cached: the test would not compute them");
        const cache = await ChunkKvCache.open({dataDir: path.join(temp.dir, "data-sequential"), ramBudgetBytes: 64 * 1024 ** 2, diskBudgetBytes: 0});
        const opened = await openBlendSession({llama, model, context, sequence, modelPath: stories260kPath, cache, threads: testThreads});
        assert.ok(opened.available, opened.available ? "" : opened.reason);
        for (const [index, chunk] of tokens.entries()) {
            const alone = await opened.value.chunkKv(chunk);
            assert.equal(alone.hit, false);
            const body = together[index]!.body;
            assert.deepEqual(body.cells, alone.body.cells, `chunk ${index}: cells`);
            for (const [layer, {k}] of alone.body.layers.entries())
                assert.deepEqual(body.layers[layer]!.k.rows, k.rows, `chunk ${index}, layer ${layer}: K`);
        }
        await opened.value.close();
    });

    it("without flash attention falls back to chunk-head and says why", async () => {
        const plain = await model.createContext({contextSize: 1024, threads: testThreads, sequences: 1, flashAttention: false});
        try {
            const cache = await ChunkKvCache.open({dataDir: path.join(temp.dir, "data-nofa"), ramBudgetBytes: 64 * 1024 ** 2, diskBudgetBytes: 0});
            const opened = await openBlendSession({llama, model, context: plain, sequence: plain.getSequence(), modelPath: stories260kPath, cache, threads: testThreads});
            assert.ok(opened.available, opened.available ? "" : opened.reason);
            const prepared = await opened.value.prepare(prompt, "hkvd", 0.15);
            assert.equal(prepared.strategy, "chunk-head");
            assert.match(prepared.fallbackReason ?? "", /hkvd unavailable: flash attention is off/);
            await opened.value.close();
        } finally {
            await plain.dispose();
        }
    });

    it("chains its decodes in one job (each queued before the last finishes): ratio 1.0 over 64-token decodes still equals full", async (t) => {
        // Later decodes attend to the cells earlier ones recomputed, as one decode would; none waits for the one before.
        const small = await model.createContext({contextSize: 1024, batchSize: 64, threads: testThreads, sequences: 1, flashAttention: true});
        try {
            const cache = await ChunkKvCache.open({dataDir: path.join(temp.dir, "data-b64"), ramBudgetBytes: 64 * 1024 ** 2, diskBudgetBytes: 0});
            const smallSequence = small.getSequence();
            const opened = await openBlendSession({llama, model, context: small, sequence: smallSequence, modelPath: stories260kPath, cache, threads: testThreads});
            assert.ok(opened.available, opened.available ? "" : opened.reason);
            let traced: FusedTrace | undefined;
            const prepared = await opened.value.prepare(prompt, "hkvd", 1, {trace: {fused: (fused) => traced = fused}});
            assert.equal(prepared.strategy, "hkvd", prepared.fallbackReason);
            assert.ok(traced != null && traced.decodes >= 4, `${traced?.decodes} decodes`);
            assert.equal(traced.decodeMsEach.length, traced.decodes);
            const logits = await nextLogits(smallSequence, prepared.tokensToEvaluate, vocabSize);
            const diff = maxAbsDiff(logits, fullLogits);
            t.diagnostic(`${traced.decodes} decodes: max |logit diff| vs full ${diff.toExponential(2)}`);
            assert.ok(diff < ratioOneTolerance, `max |diff| ${diff}`);
            assert.equal(argmax(logits), argmax(fullLogits));
            await opened.value.close();  // its chunk KVs are stored after the question: let that finish before the context goes
        } finally {
            await small.dispose();
        }
    });

    it("names the decode llama.cpp refuses in a job, and the session keeps serving", async () => {
        await blend.prepare(prompt, "naive", 0);
        const start = promptLayout(prompt).chunks[0]!.start;
        const batch = (positions: number[]) => ({
            tokens: Int32Array.from(positions, (position) => prompt.tokens[position]!),
            positions: Int32Array.from(positions),
            segLen: Int32Array.of(positions.length),
            segKeep: Int32Array.of(1)
        });
        const ascending = Array.from({length: 8}, (_, index) => start + index);
        await assert.rejects(fusedBlendDecode(sequence, {batches: [batch(ascending), batch([...ascending].reverse())], checkLayer: 1}),
            /fused blend decode 2 of 2: bad batch/);
        await assert.rejects(fusedBlendDecode(sequence, {batches: [{...batch(ascending), segLen: Int32Array.of(7)}], checkLayer: 1}),
            /segLen must sum to the token count/);
        const prepared = await blend.prepare(prompt, "hkvd", 1);
        assert.equal(prepared.strategy, "hkvd", prepared.fallbackReason);
        const logits = await nextLogits(sequence, prepared.tokensToEvaluate, vocabSize);
        assert.ok(maxAbsDiff(logits, fullLogits) < ratioOneTolerance);
    });
});
