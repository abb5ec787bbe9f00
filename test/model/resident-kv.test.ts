// The resident tier (main/engine/kv/resident-tier.ts, native/src/kv_resident.cpp, Weft patch 0002): chunk KVs kept
// in the KV cache's own buffer type and placed with the backend's tensor copies, K re-positioned by llama.cpp's own
// K-shift at the next decode. On this CPU build the "device" is host memory, so this checks the placement, the
// rotation and the bookkeeping; the GPU run (scripts/gpu-run.sh) measures the device-to-device copies.
import assert from "node:assert/strict";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {getLlama, type Llama, type LlamaContext, type LlamaContextSequence, LlamaLogLevel, type LlamaModel} from "node-llama-cpp";
import {type BlendSession, type BlendStrategy, openBlendSession} from "../../main/engine/blend/blend.js";
import {ChunkKvCache} from "../../main/engine/kv/chunk-cache.js";
import {isTransposed, type KvBody, parseSeqStateMemory, sliceCells} from "../../main/engine/kv/kv-blob.js";
import {
    contextHandleOf, getContextSequenceState, loadNativeAddon, markTokensEvaluated, releaseResidentKv, residentKvSupported, sequenceIdOf,
    uploadResidentKv
} from "../../main/engine/native/native-addon.js";
import {ResidentTier} from "../../main/engine/kv/resident-tier.js";
import {StoreFailures} from "../../main/engine/kv/store-failures.js";
import {spliceIntoSequence, spliceSpecOf} from "../../main/engine/blend/splice.js";
import {buildPrompt, type BuiltPrompt} from "../../main/engine/prompt.js";
import {defaultFocus, nameTokenTest} from "../../main/engine/blend/focus.js";
import {inFocusOrder} from "../../main/engine/blend/focus-order.js";
import {blendSkipReason, nextLogits, storyQuestion, storySources} from "../helpers/blend-prompt.js";
import {argmax, klDivergence, maxAbsDiff} from "../helpers/logits.js";
import {makeTempDir, stories260kPath, testThreads} from "../helpers/paths.js";

const sources = storySources;
const question = storyQuestion;

/**
 * The resident path rotates K with llama.cpp's K-shift graph, the host path with the addon's C++ rotation: both are
 * f32 math rounded to f16, so they may differ by an f16 ulp now and then. A missing or wrong rotation moves logits by
 * far more (the control below measures it).
 */
const samePromptTolerance = 1e-2;

/**
 * A prompt of host and resident parts has its cells in another order than an all-host one: the host parts first, the
 * resident ones after them, the labels after every part (splice.ts withLabelCells gives them cells in prompt order only
 * when all parts come from one tier). Attention then sums in another order: 1.5e-2 here, and 2.55e-2 for hkvd on this
 * model (withLabelCells). A wrong rotation moves the logits by ~1.8 (the control below).
 */
const otherOrderTolerance = 3e-2;


const skip = blendSkipReason();

function nativeAddon() {
    const load = loadNativeAddon();
    assert.ok(load.available);
    return load.value;
}

describe("resident chunk KVs on stories260K (CPU, patched build)", {skip}, () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let llama: Llama;
    let model: LlamaModel;
    let context: LlamaContext;
    let sequence: LlamaContextSequence;
    let cache: ChunkKvCache;
    let blend: BlendSession;
    let prompt: BuiltPrompt;
    let vocabSize: number;
    /** A chunk's KV computed alone (the control test makes it; the refusal test reuses it). */
    let chunkBody: KvBody;

    before(async () => {
        temp = await makeTempDir();
        llama = await getLlama({gpu: false, maxThreads: testThreads, build: "never", logLevel: LlamaLogLevel.error});
        model = await llama.loadModel({modelPath: stories260kPath});
        context = await model.createContext({contextSize: 1024, threads: testThreads, sequences: 1, flashAttention: true});
        sequence = context.getSequence();
        vocabSize = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
        cache = await ChunkKvCache.open({dataDir: path.join(temp.dir, "data"), ramBudgetBytes: 64 * 1024 ** 2, diskBudgetBytes: 64 * 1024 ** 2});
        const opened = await openBlendSession({llama, model, context, sequence, modelPath: stories260kPath, cache, threads: testThreads,
            residentBudgetBytes: 64 * 1024 ** 2});
        assert.ok(opened.available, opened.available ? "" : opened.reason);
        blend = opened.value;
        prompt = buildPrompt(model, question, sources, false);
    });

    after(async () => {
        await blend?.close();
        await context?.dispose();
        await model?.dispose();
        await temp?.cleanup();
    });

    async function blended(strategy: BlendStrategy, ratio: number) {
        const prepared = await blend.prepare(prompt, strategy, ratio);
        assert.equal(prepared.reusedTokens + prepared.recomputedTokens + prepared.freshTokens, prompt.tokens.length);
        return {prepared, logits: await nextLogits(sequence, prepared.tokensToEvaluate, vocabSize)};
    }

    it("this build has patch 0002, and the blend context has a resident tier", () => {
        assert.equal(residentKvSupported(), true);
        assert.ok(blend.resident != null);
        assert.equal(blend.resident.stats().entries, 0);
    });

    it("a blend admits its header and chunks; the next one places them from the tier with the same logits", async (t) => {
        const first = await blended("naive", 0);
        assert.equal(first.prepared.kvResidentBytes, 0, "nothing is resident yet");
        await blend.admissionsSettled();
        const stats = blend.resident!.stats();
        assert.equal(stats.entries, 1 + sources.length, "the header and every chunk are admitted");

        const second = await blended("naive", 0);
        assert.equal(second.prepared.kvResidentBytes, stats.bytes, "every part came from the tier");
        assert.equal(second.prepared.kvBlobBytes, 0, "no host state was built");
        assert.equal(sequence.contextTokens.length, prompt.tokens.length);
        const diff = maxAbsDiff(second.logits, first.logits);
        t.diagnostic(`resident vs host naive: max |logit diff| ${diff.toExponential(2)}, KL ${klDivergence(first.logits, second.logits).toExponential(2)}`);
        assert.ok(diff < samePromptTolerance, `max |diff| ${diff}`);
        assert.equal(argmax(second.logits), argmax(first.logits));

        // Every prompt position holds exactly one cell (placed chunks, then the labels and question decoded after them).
        const cells = parseSeqStateMemory(await getContextSequenceState(context, sequenceIdOf(sequence))).body.cells;
        assert.deepEqual(cells.map((cell) => cell.pos).sort((a, b) => a - b), Array.from({length: cells.length}, (_, index) => index));
    });

    it("chunk-head recomputes on top of resident chunks like on host ones", async (t) => {
        const tier = await blend.replaceResidentTier(undefined);
        const host = await blended("chunk-head", 0.3);
        await blend.replaceResidentTier(tier);
        const resident = await blended("chunk-head", 0.3);
        assert.ok(resident.prepared.kvResidentBytes > 0);
        assert.equal(resident.prepared.recomputedTokens, host.prepared.recomputedTokens);
        const diff = maxAbsDiff(resident.logits, host.logits);
        t.diagnostic(`chunk-head 0.3 resident vs host: max |logit diff| ${diff.toExponential(2)}`);
        assert.ok(diff < samePromptTolerance, `max |diff| ${diff}`);
    });

    it("hkvd places its chunks from the resident tier too and selects and recomputes on top as on host rows", async (t) => {
        const tier = await blend.replaceResidentTier(undefined);
        const host = await blended("hkvd", 0.3);
        await blend.replaceResidentTier(tier);
        const resident = await blended("hkvd", 0.3);
        assert.equal(resident.prepared.strategy, "hkvd", resident.prepared.fallbackReason);
        assert.ok(resident.prepared.kvResidentBytes > 0);
        assert.ok(resident.prepared.recomputedTokens > 0);
        assert.deepEqual(resident.prepared.selectedPositions, host.prepared.selectedPositions);
        const diff = maxAbsDiff(resident.logits, host.logits);
        t.diagnostic(`hkvd 0.3 resident vs host: max |logit diff| ${diff.toExponential(2)}`);
        // both give the labels cells between the chunks' (placeholders here, zero rows on the host): the same cell order
        assert.ok(diff < samePromptTolerance, `max |diff| ${diff}`);
    });

    it("places the first source's lead version from the tier too, so hkvd's parts stay all resident", async (t) => {
        // The app's order: the question's focus first, whose lead version (exact as cached) replaces its recompute.
        const ordered = inFocusOrder(prompt, sources, defaultFocus, nameTokenTest(model), (moved) => buildPrompt(model, question, moved, false)).prompt;
        const tier = await blend.replaceResidentTier(undefined);
        const host = await blend.prepare(ordered, "hkvd", 0.3);
        const hostLogits = await nextLogits(sequence, host.tokensToEvaluate, vocabSize);
        await blend.replaceResidentTier(tier);
        await blend.prepare(ordered, "hkvd", 0.3);  // admits the lead version after it
        await blend.admissionsSettled();
        const resident = await blend.prepare(ordered, "hkvd", 0.3);
        assert.deepEqual(resident.exactSources, [1]);
        assert.deepEqual(resident.chunkKv?.map((chunk) => chunk.kvSource), ordered.segments.filter((s) => s.kind === "chunk").map(() => "resident"));
        assert.equal(resident.kvBlobBytes, 0, "no host state was built");
        assert.deepEqual(resident.selectedPositions, host.selectedPositions);
        const diff = maxAbsDiff(await nextLogits(sequence, resident.tokensToEvaluate, vocabSize), hostLogits);
        t.diagnostic(`hkvd 0.3 with the lead version resident vs host: max |logit diff| ${diff.toExponential(2)}`);
        assert.ok(diff < samePromptTolerance, `max |diff| ${diff}`);
    });

    it("mixes host and resident parts in one prompt, and evicts the least recently used under its budget", async (t) => {
        const reference = await blended("naive", 0);
        const full = blend.resident!;
        // A budget that holds about two of the four parts: the tier evicts as it admits.
        const small = new ResidentTier(Math.ceil(full.stats().bytes / 2));
        await blend.replaceResidentTier(small);
        await blended("naive", 0);
        await blend.admissionsSettled();
        assert.ok(small.stats().entries >= 1 && small.stats().entries < 1 + sources.length, `entries ${small.stats().entries}`);
        assert.ok(small.stats().evictedBytes > 0, "admitting past the budget evicts");
        assert.ok(small.stats().bytes <= small.budgetBytes);
        const mixed = await blended("naive", 0);
        assert.ok(mixed.prepared.kvResidentBytes > 0 && mixed.prepared.kvBlobBytes > 0, "some parts from each tier");
        const diff = maxAbsDiff(mixed.logits, reference.logits);
        t.diagnostic(`mixed vs host naive: max |logit diff| ${diff.toExponential(2)}`);
        assert.ok(diff < otherOrderTolerance, `max |diff| ${diff}`);
        await blend.admissionsSettled();
        small.clear();
        await blend.replaceResidentTier(full);
    });

    it("control: resident K placed without its rotation changes the logits (the check above can fail)", async (t) => {
        const tier = blend.resident!;
        const bos = model.tokens.bos!;
        const chunkTokens = model.tokenize(" Tom was a big dog. He liked to run and jump in the garden.", false);
        const header = model.tokenize("A story.", true);
        await sequence.clearHistory();
        await sequence.evaluateWithoutGeneratingNewTokens([bos, ...chunkTokens]);
        const alone = parseSeqStateMemory(await getContextSequenceState(context, sequenceIdOf(sequence))).body;
        await sequence.clearHistory();
        await sequence.evaluateWithoutGeneratingNewTokens(header);
        const headerBody = parseSeqStateMemory(await getContextSequenceState(context, sequenceIdOf(sequence))).body;
        await tier.admit(sequence, "control:header", headerBody);
        chunkBody = sliceCells(alone, 1, alone.cells.length);
        await tier.admit(sequence, "control:chunk", chunkBody);
        const headerEntry = tier.get("control:header")!, chunkEntry = tier.get("control:chunk")!;
        const tokens = [...header, ...chunkTokens];
        const next = model.tokenize(" One day", false);

        const delta = header.length - 1;
        await spliceIntoSequence(sequence, [{resident: headerEntry, delta: 0}, {resident: chunkEntry, delta}], tokens, blend.rope, {threads: 1});
        const rotated = await nextLogits(sequence, next, vocabSize);
        // The same cells at the same final positions, but claiming they were computed there: no K-shift happens.
        const unrotated = {...chunkEntry, positions: chunkEntry.positions.map((pos: number) => pos + delta)};
        await spliceIntoSequence(sequence, [{resident: headerEntry, delta: 0}, {resident: unrotated, delta: 0}], tokens, blend.rope, {threads: 1});
        const wrong = await nextLogits(sequence, next, vocabSize);
        const diff = maxAbsDiff(wrong, rotated);
        t.diagnostic(`without the rotation: max |logit diff| ${diff.toExponential(2)}`);
        assert.ok(diff > 5 * samePromptTolerance, `an unrotated K should move the logits, moved ${diff}`);
    });

    it("placed rows land in their own cells: parts cut from one KV and placed back to back give back its rows, byte for byte", async () => {
        const bos = model.tokens.bos!;
        const tokens = [bos, ...model.tokenize(" Lily had a red ball. She threw it over the fence and the dog ran after it.", false)];
        await sequence.clearHistory();
        await sequence.evaluateWithoutGeneratingNewTokens(tokens);
        const whole = parseSeqStateMemory(await getContextSequenceState(context, sequenceIdOf(sequence))).body;
        assert.equal(whole.cells.length, tokens.length);
        // Three parts of different sizes, each in its own device buffer; rows of every layer differ from cell to cell,
        // so a row copied to a neighbouring cell, another layer or the other of K and V shows below.
        const cuts = [0, 3, 10, tokens.length];
        const scratch = new ResidentTier(64 * 1024 ** 2);
        for (let p = 0; p + 1 < cuts.length; p++)
            assert.equal(await scratch.admit(sequence, `part ${p}`, sliceCells(whole, cuts[p]!, cuts[p + 1]!)), true);
        const parts = cuts.slice(1).map((_, p) => ({resident: scratch.get(`part ${p}`)!, delta: 0}));
        // Other rows in the cells the parts will take, so rows a copy misses do not hold the expected values already.
        const other = [bos, ...model.tokenize(" The sun was hot, so the children played in the cold water of the lake all day long.", false)];
        assert.ok(other.length >= tokens.length);
        await sequence.clearHistory();
        await sequence.evaluateWithoutGeneratingNewTokens(other);
        const result = await spliceIntoSequence(sequence, parts, tokens, blend.rope, {threads: 1});
        // Every layer's K and V rows of a part step by one pitch in its buffer and in the cache: one strided copy a part.
        assert.equal(result.residentCopies, parts.length, "one copy per part (the layers' K and V rows merged)");

        const placed = parseSeqStateMemory(await getContextSequenceState(context, sequenceIdOf(sequence))).body;
        assert.deepEqual(placed.cells.map((cell) => cell.pos), whole.cells.map((cell) => cell.pos));
        assert.equal(placed.layers.length, whole.layers.length);
        const wrong: string[] = [];
        placed.layers.forEach((layer, il) => {
            for (const which of ["k", "v"] as const) {
                const got = layer[which], want = whole.layers[il]![which];
                if (isTransposed(got) || isTransposed(want))
                    throw new Error("V is transposed: this context has flash attention on");
                for (let cell = 0; cell < whole.cells.length; cell++) {
                    const row = (rows: Uint8Array) => rows.subarray(cell * want.rowSize, (cell + 1) * want.rowSize);
                    if (Buffer.compare(row(got.rows), row(want.rows)) !== 0)
                        wrong.push(`layer ${il} ${which.toUpperCase()} cell ${cell}`);
                }
            }
        });
        assert.deepEqual(wrong, [], `${wrong.length} rows differ, first: ${wrong.slice(0, 5).join(", ")}`);
        scratch.clear();
    });

    it("a handle released while its placement is in flight keeps its rows until the copies are done", async () => {
        const tier = blend.resident!;
        const scratch = new ResidentTier(64 * 1024 ** 2);
        assert.equal(await scratch.admit(sequence, "chunk", chunkBody), true);
        const headerEntry = tier.get("control:header")!, chunkEntry = scratch.get("chunk")!;
        const header = model.tokenize("A story.", true);
        const tokens = [...header, ...model.tokenize(" Tom was a big dog. He liked to run and jump in the garden.", false)];
        const next = model.tokenize(" One day", false);
        const parts = [{resident: headerEntry, delta: 0}, {resident: chunkEntry, delta: header.length - 1}];
        await spliceIntoSequence(sequence, parts, tokens, blend.rope, {threads: 1});
        const expected = await nextLogits(sequence, next, vocabSize);

        // The addon reads the plan when called; the copies run later on a worker. Releasing the handle in between (as an
        // eviction by background admission can) must not free the rows under them.
        await sequence.clearHistory();
        const pending = nativeAddon().spliceSequenceState(contextHandleOf(context), sequenceIdOf(sequence),
            spliceSpecOf(parts, blend.rope, {threads: 1}));
        assert.ok(releaseResidentKv(chunkEntry.handle) > 0);
        assert.ok((await pending).residentBytes > 0);
        markTokensEvaluated(sequence, tokens);
        assert.equal(maxAbsDiff(await nextLogits(sequence, next, vocabSize), expected), 0);
    });

    it("a failed admission into the resident tier is counted and warned about once, not thrown", async () => {
        const warnings: string[] = [];
        const opened = await openBlendSession({llama, model, context, sequence, modelPath: stories260kPath, cache, threads: testThreads,
            residentBudgetBytes: 64 * 1024 ** 2, failures: new StoreFailures((line) => warnings.push(line))});
        assert.ok(opened.available);
        const session = opened.value;
        try {
            // KV of another layout (a layer short) than the context's cache: the upload refuses it.
            const foreign = {...chunkBody, layers: chunkBody.layers.slice(1)};
            const tokens = model.tokenize(" Tom was a big dog.", false);
            assert.equal(await session.warmResidentChunk(tokens, foreign), false);
            assert.equal(await session.warmResidentChunk(model.tokenize(" Lily ran.", false), foreign), false);
            const {residentAdmission} = session.failures.snapshot();
            assert.equal(residentAdmission.count, 2);
            assert.match(residentAdmission.lastError ?? "", /layers/);
            assert.equal(warnings.length, 1);
            assert.match(warnings[0]!, /resident tier/);
            assert.equal(session.resident?.stats().entries, 0);
        } finally {
            await session.close();
        }
    });

    it("refuses a released or foreign handle with a clear error and leaves the sequence empty and usable", async () => {
        const scratch = new ResidentTier(64 * 1024 ** 2);
        assert.equal(await scratch.admit(sequence, "chunk", chunkBody), true);
        const entry = scratch.get("chunk")!;
        const tokens = prompt.tokens.slice(0, entry.positions.length);
        assert.ok(releaseResidentKv(entry.handle) > 0);
        assert.equal(releaseResidentKv(entry.handle), 0, "a second release frees nothing");
        await assert.rejects(spliceIntoSequence(sequence, [{resident: entry, delta: 0}], tokens, blend.rope, {threads: 1}), /resident KV was released/);
        assert.equal(sequence.contextTokens.length, 0, "a refused splice leaves the sequence empty");

        const live = blend.resident!.get("control:chunk")!;
        const plain = await model.createContext({contextSize: 256, threads: testThreads, sequences: 1, flashAttention: false});
        try {
            const plainSequence = plain.getSequence();
            await assert.rejects(spliceIntoSequence(plainSequence, [{resident: live, delta: 0}], tokens, blend.rope, {threads: 1}),
                /made for another context/);
            const layers = chunkBody.layers.map(({k, v}) => ({kType: k.type, kRowSize: k.rowSize, vType: v.type,
                vRowSize: "rowSize" in v ? v.rowSize : 0, k: k.rows, v: "rows" in v ? v.rows : v.data}));
            await assert.rejects(uploadResidentKv(plainSequence, {cellCount: chunkBody.cells.length, layers}), /transposed/);
        } finally {
            await plain.dispose();
        }

        const {prepared, logits} = await blended("naive", 0);
        assert.ok(prepared.kvResidentBytes > 0, "the engine keeps serving from the tier");
        assert.ok(logits.some((value) => value !== 0));
    });
});
