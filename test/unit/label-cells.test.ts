// hkvd's resident parts with placeholder cells for the labels between chunks (main/engine/blend/splice.ts): the order
// of the parts becomes the order of the cells, so it must follow the prompt's positions.
import assert from "node:assert/strict";
import {describe, it} from "node:test";
import {type SplicePartInput, withLabelCells} from "../../main/engine/blend/splice.js";
import type {ResidentEntry} from "../../main/engine/kv/resident-tier.js";

const resident = (name: string, length: number): SplicePartInput =>
    ({resident: {handle: name, positions: Int32Array.from({length}, (_, index) => index + 1)} as unknown as ResidentEntry, delta: 0});
const segment = (kind: string, length: number, start: number) => ({segment: {kind, tokens: Array.from({length}, () => 0)}, start});

describe("withLabelCells", () => {
    // [header 0..2][label 3..4][chunk 5..9][label 10..11][chunk 12..14][question 15..17]
    const layout = [segment("header", 3, 0), segment("label", 2, 3), segment("chunk", 5, 5), segment("label", 2, 10),
        segment("chunk", 3, 12), segment("question", 3, 15)];
    const headerEnd = 5, tailStart = 15;

    it("puts each label's positions before the chunk that follows it, and nothing for the header or the question", () => {
        const a = resident("a", 5), b = resident("b", 3);
        const ordered = withLabelCells([a, b], layout, headerEnd, tailStart);
        assert.deepEqual(ordered, [a, {placeholder: [10, 11]}, b]);
    });

    it("a label inside the range before the first chunk gets cells too", () => {
        const a = resident("a", 5), b = resident("b", 3);
        assert.deepEqual(withLabelCells([a, b], layout, 3, tailStart), [{placeholder: [3, 4]}, a, {placeholder: [10, 11]}, b]);
    });

    it("leaves the parts as they are when they do not match the layout's chunks", () => {
        const a = resident("a", 5);
        assert.deepEqual(withLabelCells([a], layout, headerEnd, tailStart), [a]);
        const parts = [resident("a", 5), resident("b", 3), resident("c", 1)];
        assert.deepEqual(withLabelCells(parts, layout, headerEnd, tailStart), parts);
    });
});
