// The chunker's invariants on real parsed fixtures and on synthetic worst cases, with a whitespace tokenizer
// standing in for the model's.
import assert from "node:assert/strict";
import {createHash} from "node:crypto";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {chunkDocument} from "../../main/engine/library/chunk.js";
import {parseDocument} from "../../main/engine/library/parse/index.js";
import type {Chunk, ParsedDocument, Section} from "../../main/engine/library/types.js";
import {type DocFixtures, makeDocs, markers} from "../fixtures/make-docs.js";
import {makeTempDir} from "../helpers/paths.js";

const words = (text: string): number => text.split(/\s+/).filter((word) => word !== "").length;

/** A whitespace tokenizer that counts its calls. */
function counter(): {countTokens: (text: string) => number; calls: () => number} {
    let calls = 0;
    return {countTokens: (text) => (calls++, words(text)), calls: () => calls};
}

function doc(text: string, sections?: Section[]): ParsedDocument {
    return {path: "mem.txt", type: "text", title: null, text, sections: sections ?? [{headingPath: [], page: null, start: 0, end: text.length}]};
}

/** Everything a consumer of chunks relies on. */
function assertInvariants(source: ParsedDocument, chunks: Chunk[], maxTokens: number, countTokens = words): void {
    let previousEnd = 0;
    chunks.forEach((chunk, index) => {
        assert.equal(chunk.index, index);
        assert.equal(source.text.slice(chunk.span[0], chunk.span[1]), chunk.text, "span must slice to the text");
        assert.equal(chunk.text, chunk.text.trim(), "chunks carry no surrounding whitespace");
        assert.ok(chunk.text.length > 0);
        assert.ok(chunk.span[0] >= previousEnd, "chunks are in order and do not overlap");
        previousEnd = chunk.span[1];
        assert.equal(chunk.tokenCount, countTokens(chunk.text));
        assert.ok(chunk.tokenCount <= maxTokens, `chunk ${index} has ${chunk.tokenCount} > ${maxTokens} tokens`);
        assert.equal(chunk.contentHash, createHash("sha256").update(chunk.text).digest("hex"));
        const section = source.sections.find((candidate) => candidate.start <= chunk.span[0] && chunk.span[1] <= candidate.end);
        assert.ok(section !== undefined, `chunk ${index} crosses a section boundary`);
        assert.equal(chunk.page, section.page);
        assert.deepEqual(chunk.headingPath, section.headingPath);
    });
    // Nothing is lost: every non-whitespace character lands in some chunk.
    const covered = chunks.map((chunk) => chunk.text).join("").replace(/\s+/g, "");
    assert.equal(covered, source.text.replace(/\s+/g, ""));
}

let temp: {dir: string; cleanup(): Promise<void>};
let docs: DocFixtures;

before(async () => {
    temp = await makeTempDir("weft-chunk-");
    docs = await makeDocs(path.join(temp.dir, "docs"));
});
after(() => temp.cleanup());

async function parsed(filePath: string): Promise<ParsedDocument> {
    const outcome = await parseDocument(filePath);
    assert.equal(outcome.kind, "parsed", JSON.stringify(outcome));
    return (outcome as {doc: ParsedDocument}).doc;
}

describe("chunkDocument on parsed fixtures", () => {
    it("keeps every invariant for each supported type", async () => {
        for (const file of [docs.markdown, docs.html, docs.text, docs.code, docs.extensionless, docs.pdf, docs.pdfWithBlankPage, docs.docx]) {
            const source = await parsed(file);
            const chunks = chunkDocument(source, {countTokens: words});
            assert.ok(chunks.length > 0, file);
            assertInvariants(source, chunks, 512);
        }
    });

    it("never merges across pages or headings, even when everything would fit one chunk", async () => {
        const pdf = await parsed(docs.pdf);
        const chunks = chunkDocument(pdf, {countTokens: words});
        markers.pdfPages.forEach((marker, index) => {
            const holding = chunks.filter((chunk) => chunk.text.includes(marker));
            assert.equal(holding.length, 1);
            assert.equal(holding[0]!.page, index + 1);
        });
        assert.deepEqual(chunks.map((chunk) => chunk.headingPath), [["Introduction"], ["Methods"], ["Methods", "Data"], ["Results"]]);

        const markdown = await parsed(docs.markdown);
        const headingPaths = chunkDocument(markdown, {countTokens: words}).map((chunk) => chunk.headingPath.join(" > "));
        assert.deepEqual(headingPaths, ["", "Weft Guide", "Weft Guide > Installation", "Weft Guide > Installation > On Linux", "Weft Guide > Usage"]);
    });

    it("is deterministic", async () => {
        const source = await parsed(docs.docx);
        const first = chunkDocument(source, {countTokens: words, targetTokens: 8, maxTokens: 10});
        const second = chunkDocument(source, {countTokens: words, targetTokens: 8, maxTokens: 10});
        assert.deepEqual(second, first);
        // A known value, so a change to hashing (which would re-embed every library) shows up here.
        const last = first[first.length - 1]!;
        assert.equal(last.text, "Troubleshooting\n\nRestart the app if indexing stalls.");
        assert.equal(last.contentHash, "a36335d122508c6c97fcbb8ad4496ee81a536ba0f7055f7d2b35ba8a85914f5b");
    });
});

describe("chunkDocument splitting and packing", () => {
    it("packs small paragraphs of one section up to the target", () => {
        const text = Array.from({length: 30}, (_, i) => `Paragraph ${i} has five words.`).join("\n\n");
        const source = doc(text);
        const chunks = chunkDocument(source, {countTokens: words, targetTokens: 50, maxTokens: 60});
        assertInvariants(source, chunks, 60);
        // 150 words at about 50 a chunk: packed, not one chunk per paragraph.
        assert.ok(chunks.length >= 3 && chunks.length <= 5, `${chunks.length} chunks`);
        assert.ok(chunks.slice(0, -1).every((chunk) => chunk.tokenCount >= 25));
        assert.ok(chunks.every((chunk) => /^Paragraph \d+/.test(chunk.text) && chunk.text.endsWith(".")), "cuts fall between paragraphs");
    });

    it("splits one huge paragraph at sentences, and one without sentences at words", () => {
        const sentences = Array.from({length: 500}, (_, i) => `Sentence ${i} goes on for a little while here.`).join(" ");
        const bySentence = doc(sentences);
        const sentenceChunks = chunkDocument(bySentence, {countTokens: words, targetTokens: 100, maxTokens: 120});
        assertInvariants(bySentence, sentenceChunks, 120);
        assert.ok(sentenceChunks.length > 20);
        assert.ok(sentenceChunks.every((chunk) => chunk.text.endsWith(".")), "cuts fall at sentence ends");

        const wall = doc(Array.from({length: 20_000}, (_, i) => `w${i}`).join(" "));
        const tokenizer = counter();
        const wallChunks = chunkDocument(wall, {countTokens: tokenizer.countTokens});
        assertInvariants(wall, wallChunks, 512);
        assert.ok(wallChunks.length >= 40 && wallChunks.length <= 60, `${wallChunks.length} chunks`);
        assert.ok(tokenizer.calls() <= wallChunks.length * 2 + 5, `${tokenizer.calls()} tokenizer calls for ${wallChunks.length} chunks`);
    });

    it("slices a run without whitespace by measured tokens, never splitting a surrogate pair", () => {
        const run = "漢字😀".repeat(2000);
        const source = doc(run);
        const perCodePoint = (text: string): number => [...text].length;
        const chunks = chunkDocument(source, {countTokens: perCodePoint, targetTokens: 100, maxTokens: 128});
        assertInvariants(source, chunks, 128, perCodePoint);
        // A lone surrogate would not survive a UTF-8 round trip.
        assert.ok(chunks.every((chunk) => Buffer.from(chunk.text).toString() === chunk.text));
        assert.ok(chunks.length >= 47 && chunks.length <= 67, `${chunks.length} chunks`);
    });

    it("calls the tokenizer about once per chunk on ordinary prose", () => {
        const text = Array.from({length: 200}, (_, p) =>
            Array.from({length: 6}, (_, s) => `In paragraph ${p} sentence ${s} explains one more detail of the system.`).join(" ")
        ).join("\n\n");
        const tokenizer = counter();
        const chunks = chunkDocument(doc(text), {countTokens: tokenizer.countTokens});
        assertInvariants(doc(text), chunks, 512);
        assert.ok(tokenizer.calls() <= chunks.length + 5, `${tokenizer.calls()} calls for ${chunks.length} chunks`);
    });

    it("holds maxTokens when the estimate is far off and the tokenizer adds a BOS token", () => {
        // Four tokens per character: the chars/4 starting estimate is 16 times too low.
        const dense = (text: string): number => 1 + text.replace(/\s/g, "").length * 4;
        const text = Array.from({length: 40}, (_, i) => `line ${i} of dense text`).join("\n");
        const source = doc(text);
        const chunks = chunkDocument(source, {countTokens: dense, targetTokens: 40, maxTokens: 64});
        assertInvariants(source, chunks, 64, dense);
    });

    it("skips whitespace-only sections and empty documents; clamps target to max; rejects max < 1", () => {
        const text = "alpha\n\n   \n\nbeta";
        const source = doc(text, [
            {headingPath: ["A"], page: 1, start: 0, end: 7},
            {headingPath: ["B"], page: 1, start: 7, end: 12},
            {headingPath: ["C"], page: 2, start: 12, end: text.length}
        ]);
        const chunks = chunkDocument(source, {countTokens: words, targetTokens: 1000, maxTokens: 4});
        assertInvariants(source, chunks, 4);
        assert.deepEqual(chunks.map((chunk) => [chunk.text, chunk.headingPath, chunk.page]), [["alpha", ["A"], 1], ["beta", ["C"], 2]]);
        assert.deepEqual(chunkDocument(doc("", []), {countTokens: words}), []);
        assert.throws(() => chunkDocument(source, {countTokens: words, maxTokens: 0}), RangeError);
    });
});
