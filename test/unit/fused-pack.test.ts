// How hkvd's fused decodes are cut (main/engine/blend/fused.ts: packFusedBatches): never more decodes than filling each
// to the batch size, every decode within it, pieces whole and in order, and no tiny last decode where an even cut exists.
import assert from "node:assert/strict";
import {describe, it} from "node:test";
import {type FusedSegment, packFusedBatches} from "../../main/engine/blend/fused.js";

/** A prompt's fused segments: a label before each chunk, then the question's tail. */
function prompt(chunks: number[], label: number, question: number): FusedSegment[] {
    const segments: FusedSegment[] = [];
    let start = 20;
    for (const length of chunks) {
        segments.push({start, length: label, forced: true});
        start += label;
        segments.push({start, length, forced: false});
        start += length;
    }
    segments.push({start, length: question, forced: true});
    return segments;
}

function greedyCount(pieces: FusedSegment[], batchSize: number): number {
    let count = 0;
    let tokens = batchSize + 1;
    for (const piece of pieces) {
        if (tokens + piece.length > batchSize) {
            count++;
            tokens = 0;
        }
        tokens += piece.length;
    }
    return count;
}

function check(pieces: FusedSegment[], batchSize: number): FusedSegment[][] {
    const batches = packFusedBatches(pieces, batchSize);
    assert.deepEqual(batches.flat(), pieces, "pieces whole and in order");
    assert.ok(batches.length <= greedyCount(pieces, batchSize), `${batches.length} decodes, greedy needs ${greedyCount(pieces, batchSize)}`);
    for (const batch of batches)
        assert.ok(batch.reduce((sum, piece) => sum + piece.length, 0) <= batchSize, "a decode past the batch size");
    return batches;
}

const sizes = (batches: FusedSegment[][]) => batches.map((batch) => batch.reduce((sum, piece) => sum + piece.length, 0));

describe("packFusedBatches", () => {
    it("cuts 8k of 512-token chunks at batch 2048 into five even decodes, not four full ones and the question alone", () => {
        const batches = check(prompt(Array.from({length: 16}, () => 500), 12, 43), 2048);
        assert.equal(batches.length, 5);
        assert.ok(Math.min(...sizes(batches)) >= 1024, `decode sizes ${sizes(batches).join(", ")}`);
    });

    it("gives the CPU's 512-token decodes at least 64 tokens each where whole pieces allow it", () => {
        for (const question of [5, 30, 63]) {
            const batches = check(prompt(Array.from({length: 8}, () => 440), 14, question), 512);
            assert.ok(Math.min(...sizes(batches)) >= 64, `question ${question}: decode sizes ${sizes(batches).join(", ")}`);
        }
    });

    it("keeps one decode when everything fits, and pieces as large as a batch on their own", () => {
        assert.equal(check(prompt([300, 200], 10, 20), 2048).length, 1);
        const batches = check(prompt([512, 512, 512], 0, 1).filter((piece) => piece.length > 0), 512);
        assert.deepEqual(sizes(batches), [512, 512, 512, 1]); // nothing smaller exists: each chunk fills a decode
    });

    it("handles random layouts without growing the decode count", () => {
        let seed = 7;
        const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
        for (let round = 0; round < 200; round++) {
            const batchSize = [64, 512, 2048][round % 3]!;
            const chunks = Array.from({length: 1 + Math.floor(random() * 20)}, () => 1 + Math.floor(random() * batchSize));
            check(prompt(chunks, Math.floor(random() * 16), 1 + Math.floor(random() * 60)).filter((piece) => piece.length > 0), batchSize);
        }
    });
});
