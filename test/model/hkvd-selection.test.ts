// hkvd at ratios below 1 (blend-exactness.test.ts covers ratio 1, where every token is chosen): the positions it
// recomputes must be the top-k chunk positions of the K/V deviation computed by the TypeScript reference
// (test/helpers/kv-reference.ts) from the same capture and the same cached chunk KVs.
import assert from "node:assert/strict";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {getLlama, type Llama, type LlamaContext, type LlamaModel} from "node-llama-cpp";
import {type BlendSession, openBlendSession} from "../../main/engine/blend/blend.js";
import type {SelectTrace} from "../../main/engine/blend/prepare.js";
import {captureContextSize, selectionLayer} from "../../main/engine/blend/select.js";
import {ChunkKvCache} from "../../main/engine/kv/chunk-cache.js";
import {captureLayerKV} from "../../main/engine/native/native-addon.js";
import {buildPrompt, type BuiltPrompt} from "../../main/engine/prompt.js";
import {blendSkipReason, storyQuestion, storySources} from "../helpers/blend-prompt.js";
import {type PlacedChunk, referenceKvDeviation} from "../helpers/kv-reference.js";
import {makeTempDir, stories260kPath, testThreads} from "../helpers/paths.js";

describe("hkvd selection below ratio 1 (stories260K, CPU, patched build)", {skip: blendSkipReason()}, () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let llama: Llama;
    let model: LlamaModel;
    let context: LlamaContext;
    let blend: BlendSession;
    let prompt: BuiltPrompt;

    before(async () => {
        temp = await makeTempDir();
        llama = await getLlama({gpu: false, maxThreads: testThreads, build: "never"});
        model = await llama.loadModel({modelPath: stories260kPath});
        context = await model.createContext({contextSize: 1024, threads: testThreads, sequences: 1});
        const cache = await ChunkKvCache.open({dataDir: path.join(temp.dir, "data"), ramBudgetBytes: 64 * 1024 ** 2, diskBudgetBytes: 0});
        const opened = await openBlendSession({llama, model, context, sequence: context.getSequence(), modelPath: stories260kPath, cache,
            threads: testThreads});
        assert.ok(opened.available, opened.available ? "" : opened.reason);
        blend = opened.value;
        prompt = buildPrompt(model, storyQuestion, storySources, false);
    });

    after(async () => {
        await context?.dispose();
        await model?.dispose();
        await temp?.cleanup();
    });

    /** The reference deviation of every chunk position of the prompt, by position. */
    async function referenceScores(): Promise<Map<number, number>> {
        let offset = 0;
        const chunks: PlacedChunk[] = [];
        let tailStart = 0;
        for (const segment of prompt.segments) {
            if (segment.kind === "chunk") {
                chunks.push({start: offset, delta: offset - 1, body: (await blend.chunkKv(segment.tokens)).body});
                tailStart = offset + segment.tokens.length;
            }
            offset += segment.tokens.length;
        }
        const prefix = prompt.tokens.slice(0, tailStart);
        const captured = await captureLayerKV(model, prefix, selectionLayer, {contextSize: captureContextSize(prefix.length), threads: testThreads,
            flashAttention: blend.flashAttention});
        const scores = referenceKvDeviation(chunks, selectionLayer, blend.rope, captured);
        const byPosition = new Map<number, number>();
        let at = 0;
        for (const {start, body} of chunks)
            for (let cell = 0; cell < body.cells.length; cell++)
                byPosition.set(start + cell, scores[at++]!);
        return byPosition;
    }

    for (const ratio of [0.15, 0.3, 0.6]) {
        it(`recomputes the top ${ratio} of chunk positions by the reference deviation`, async (t) => {
            let selection: SelectTrace | undefined;
            const prepared = await blend.prepare(prompt, "hkvd", ratio, {trace: {select: (trace) => selection = trace}});
            assert.ok(selection != null, "hkvd reports its selection to the trace sink");
            const reference = await referenceScores();
            const budget = Math.round(ratio * reference.size);
            assert.ok(budget > 0 && budget < reference.size);
            assert.equal(selection.positions.length, budget);
            assert.equal(prepared.recomputedTokens, budget);
            assert.equal(new Set(selection.positions).size, budget, "no position is chosen twice");

            const ranked = [...reference.values()].sort((a, b) => b - a);
            const kth = ranked[budget - 1]!;
            const tolerance = 1e-4 * Math.max(1, kth);
            for (const position of selection.positions) {
                const score = reference.get(position);
                assert.ok(score != null, `position ${position} is not a chunk position`);
                assert.ok(score >= kth - tolerance, `position ${position} scores ${score}, below the ${budget}th highest ${kth}`);
            }
            // And the other way round: nothing left out scores clearly above what was chosen.
            const chosen = new Set(selection.positions);
            for (const [position, score] of reference)
                if (!chosen.has(position))
                    assert.ok(score <= kth + tolerance, `position ${position} (score ${score}) beats the chosen ones`);
            assert.ok(ranked[0]! > ranked[ranked.length - 1]! + 1e-3, "the deviation separates the positions (the check can fail)");
            t.diagnostic(`ratio ${ratio}: ${budget} of ${reference.size} chunk positions, k-th score ${kth.toFixed(4)}`);
        });
    }
});
