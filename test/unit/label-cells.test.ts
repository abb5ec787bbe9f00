// hkvd's resident parts with placeholder cells for the labels between chunks (main/engine/blend/splice.ts): the order
// of the parts becomes the order of the cells, so it must follow the prompt's positions.
import assert from "node:assert/strict";
import {describe, it} from "node:test";
import {type SplicePartInput, withLabelCells} from "../../main/engine/blend/splice.js";
import type {KvBody} from "../../main/engine/kv/kv-blob.js";
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

    it("gives host parts zero rows shaped like the chunks', at the labels' positions", () => {
        const body = (cells: number): SplicePartInput => ({delta: 0, body: {nStream: 1, stream: 0, vTrans: false,
            cells: Array.from({length: cells}, (_, index) => ({pos: index + 1, seqIds: [0]})),
            layers: [16, 24].map((rowSize) => ({k: {type: 1, rowSize, rows: new Uint8Array(cells * rowSize).fill(7)},
                v: {type: 1, rowSize: rowSize / 2, rows: new Uint8Array(cells * rowSize / 2).fill(7)}}))}});
        const a = body(5), b = body(3);
        const ordered = withLabelCells([a, b], layout, 3, tailStart);
        assert.equal(ordered.length, 4);
        assert.equal(ordered[1], a);
        assert.equal(ordered[3], b);
        for (const [index, start] of [[0, 3], [2, 10]] as const) {
            const label = ordered[index]!;
            assert.ok("body" in label);
            assert.equal(label.delta, start - 1);
            assert.deepEqual(label.body.cells.map((cell) => cell.pos + label.delta), [start, start + 1]);
            assert.deepEqual(label.body.layers.map((layer) => [layer.k.rowSize, layer.k.rows.length]), [[16, 32], [24, 48]]);
            assert.ok(label.body.layers.every((layer) => layer.k.rows.every((byte) => byte === 0) && (layer.v as {rows: Uint8Array}).rows.every((byte) => byte === 0)));
        }
    });

    it("leaves mixed resident and host parts, and transposed V, as they are", () => {
        const host: SplicePartInput = {delta: 0, body: {nStream: 1, stream: 0, vTrans: false, cells: [{pos: 1, seqIds: [0]}], layers: []}};
        const mixed = [resident("a", 5), host];
        assert.deepEqual(withLabelCells(mixed, layout, headerEnd, tailStart), mixed);
        const transposed: SplicePartInput[] = [{delta: 0, body: {...(host as {body: KvBody}).body, vTrans: true}}, {delta: 0, body: {...(host as {body: KvBody}).body, vTrans: true}}];
        assert.deepEqual(withLabelCells(transposed, layout, headerEnd, tailStart), transposed);
    });
});
