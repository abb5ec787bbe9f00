import assert from "node:assert/strict";
import {describe, it} from "node:test";
import type {Token} from "node-llama-cpp";
import {blendLayout} from "../../main/engine/blend/blend-layout.js";
import {chunkHeadPositions, fusedSegmentsOf, otherChunkFloor, otherChunkShare, recomputePlan} from "../../main/engine/blend/recompute-plan.js";
import type {BuiltPrompt, PromptSegment} from "../../main/engine/prompt.js";

const t = (count: number, base: number) => Array.from({length: count}, (_, index) => (base + index) as Token);

/** [BOS][label][A: 10][label][B: 10][label][C: 10][question: 3], chunk starts 3, 15, 27. */
function prompt(): BuiltPrompt {
    const segments: PromptSegment[] = [{kind: "fixed", tokens: t(1, 1)}];
    for (const [index, name] of ["A", "B", "C"].entries()) {
        segments.push({kind: "fixed", tokens: t(2, 10 + index)});
        segments.push({kind: "chunk", text: name, tokens: t(10, 100 * (index + 1)), source: {n: index + 1, path: `/${name}.md`}});
    }
    segments.push({kind: "fixed", tokens: t(3, 900)});
    return {tokens: segments.flatMap((segment) => segment.tokens), segments};
}

const range = (start: number, length: number) => Array.from({length}, (_, index) => start + index);

describe("which positions chunk-head and hkvd recompute (recompute-plan.ts)", () => {
    const layout = blendLayout(prompt());
    const [a, b, c] = layout.chunks as [typeof layout.chunks[0], typeof layout.chunks[0], typeof layout.chunks[0]];

    it("recomputes the focus whole and a share of the rest, nothing of the exact first source", () => {
        const plan = recomputePlan(layout, [b], a);
        assert.deepEqual(plan.focusPositions, range(b.start, 10));
        assert.deepEqual(chunkHeadPositions(layout, plan, 0.2), [...range(b.start, 10), ...range(c.start, 2)]);
        // without an exact chunk, the first source gets its share too
        assert.deepEqual(chunkHeadPositions(layout, recomputePlan(layout, [b], null), 0.2),
            [...range(b.start, 10), ...range(a.start, 2), ...range(c.start, 2)]);
        // ratio 0: the focus only
        assert.deepEqual(chunkHeadPositions(layout, plan, 0), range(b.start, 10));
    });

    it("a focus chunk that is exact as cached is not recomputed", () => {
        const plan = recomputePlan(layout, [a, b], a);
        assert.deepEqual([...plan.focusStarts], [b.start]);
        assert.deepEqual(plan.focusPositions, range(b.start, 10));
    });

    it("gives hkvd's fused decode the labels and focus forced, the exact chunk left out, the question last", () => {
        const segments = fusedSegmentsOf(layout, recomputePlan(layout, [b], a), 2);
        assert.deepEqual(segments, [
            {start: 13, length: 2, forced: true},
            {start: b.start, length: 10, forced: true},
            {start: 25, length: 2, forced: true},
            {start: c.start, length: 10, forced: false},
            {start: layout.tailStart, length: 2, forced: true}
        ]);
        assert.ok(segments.every((segment) => segment.start !== a.start));
    });

    it("counts the focus in the ratio: the other chunks share what the focus leaves of it", () => {
        // 30 chunk tokens at 0.4: a budget of 12, the focus B takes 10, C (A is exact) gets 2 of its 10
        assert.ok(Math.abs(otherChunkShare(layout, recomputePlan(layout, [b], a), 0.4) - 0.2) < 1e-12);
        assert.deepEqual(chunkHeadPositions(layout, recomputePlan(layout, [b], a), otherChunkShare(layout, recomputePlan(layout, [b], a), 0.4)),
            [...range(b.start, 10), ...range(c.start, 2)]);
        // a focus past the budget leaves the others their floor
        assert.ok(Math.abs(otherChunkShare(layout, recomputePlan(layout, [b], a), 0.2) - otherChunkFloor * 0.2) < 1e-12);
        assert.ok(otherChunkFloor > 0 && otherChunkFloor < 1);
        // without focus every chunk gets the ratio, and never more (an exact chunk does not raise the others' share)
        assert.equal(otherChunkShare(layout, recomputePlan(layout, [], null), 0.15), 0.15);
        assert.equal(otherChunkShare(layout, recomputePlan(layout, [], a), 0.2), 0.2);
        // nothing left to share
        assert.equal(otherChunkShare(layout, recomputePlan(layout, [b, c], a), 0.9), 0);
    });
});
