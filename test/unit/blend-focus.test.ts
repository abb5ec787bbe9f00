import assert from "node:assert/strict";
import {describe, it} from "node:test";
import type {Token} from "node-llama-cpp";
import {type FocusChunk, nameTokenTest, questionFocus} from "../../main/engine/blend/focus.js";

const t = (...ids: number[]) => ids as Token[];
// 1-5: words every chunk has ("is", "a", "."); 10+: names, each in one or two chunks
const common = [1, 2, 3, 4, 5];
const off = {count: 0, continuations: false, hops: 0, maxShare: 1};

describe("the chunks a blend recomputes whole (focus.ts)", () => {
    const chunks: FocusChunk[] = [
        {tokens: t(...common, 10, 11)},         // a person: 10 11, works for 20
        {tokens: t(...common, 12, 13, 20)},     // another person, works for 20
        {tokens: t(...common, 20, 21)},         // the company 20
        {tokens: t(...common, 30)}
    ];

    it("picks the chunk sharing the question's rarest tokens, not the one sharing its common words", () => {
        // the question says "is a ." (every chunk) and the name 12 13
        assert.deepEqual(questionFocus(chunks, t(1, 2, 3, 12, 13, 99), {...off, count: 1}), [1]);
        // 20 is in two chunks, 10 in one: the rarer name wins even against two shared tokens of lower weight
        assert.deepEqual(questionFocus(chunks, t(10, 20), {...off, count: 2}), [0, 1]);
    });

    it("chooses nothing when the question shares no token, or when turned off", () => {
        assert.deepEqual(questionFocus(chunks, t(98, 99), {...off, count: 3}), []);
        assert.deepEqual(questionFocus(chunks, t(10, 11), off), []);
        // a token that every chunk has weighs log(5/4) > 0 only just; with nothing rarer it still picks the first
        assert.deepEqual(questionFocus(chunks, t(1), {...off, count: 1}), [0]);
    });

    it("adds the chunk that continues a focus chunk in its document, found by span, not by prompt order", () => {
        const documents: FocusChunk[] = [
            {tokens: t(...common, 40), source: {path: "/a.md", span: [0, 120]}},
            {tokens: t(...common, 41), source: {path: "/b.md", span: [122, 200]}},  // right span, other document
            {tokens: t(...common, 42), source: {path: "/a.md", span: [500, 600]}},  // same document, not next to it
            {tokens: t(...common, 43), source: {path: "/a.md", span: [122, 300]}}   // continues chunk 0 after "\n\n"
        ];
        assert.deepEqual(questionFocus(documents, t(40), {count: 1, continuations: true, hops: 0, maxShare: 1}), [0, 3]);
        assert.deepEqual(questionFocus(documents, t(40), {count: 1, continuations: false, hops: 0, maxShare: 1}), [0]);
        // the last chunk of its document has no continuation
        assert.deepEqual(questionFocus(documents, t(43), {count: 1, continuations: true, hops: 0, maxShare: 1}), [3]);
    });

    it("a hop adds the chunk that shares the most of the focus chunk's rare tokens", () => {
        // "where is the employer of 12 13 based": chunk 1 names employer 20, whose own chunk is 2 (0 shares nothing rare)
        assert.deepEqual(questionFocus(chunks, t(12, 13), {count: 1, continuations: false, hops: 1, maxShare: 1}), [1, 2]);
    });

    it("with names marked, a hop follows a name, not the sentence words two chunks of one kind share", () => {
        // two people (tokens 50-53: "who lives in", "works for") and the companies they work for (60, 61: names)
        const people: FocusChunk[] = [
            {tokens: t(...common, 10, 50, 51, 52, 53, 60)},  // 10 works for 60
            {tokens: t(...common, 60, 70)},                  // the company 60
            {tokens: t(...common, 61, 71)},                  // another company
            {tokens: t(...common, 12, 50, 51, 52, 53, 61)}   // 12 works for 61
        ];
        const hop = {count: 1, continuations: false, hops: 1, maxShare: 1};
        // unmarked, the four sentence words outnumber the one name
        assert.deepEqual(questionFocus(people, t(10), hop), [0, 3]);
        const isName = (token: Token) => token >= 10 && token < 50 || token >= 60;
        assert.deepEqual(questionFocus(people, t(10), hop, isName), [0, 1]);
        assert.deepEqual(questionFocus(people, t(12), hop, isName), [3, 2]);
        // where no shared token is a name, every shared token links, as unmarked
        assert.deepEqual(questionFocus(people, t(10), hop, () => false), [0, 3]);
    });

    it("tells a name's first piece by its text: a capital after at most one space", () => {
        const pieces = new Map<number, string>([[1, " Tri"], [2, "oth"], [3, " works"], [4, "Its"], [5, "\u00c9mile"], [6, "  X"], [7, "東京"]]);
        let calls = 0;
        const isName = nameTokenTest({detokenize: (tokens) => { calls++; return pieces.get(tokens[0]!) ?? ""; }});
        assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map((token) => isName(token as Token)), [true, false, false, true, true, false, false]);
        isName(1 as Token);
        assert.equal(calls, 7, "remembered per token");
    });

    it("keeps the chunks recomputed whole to at most maxShare of the chunk tokens, in the order chosen", () => {
        // 29 chunk tokens: chunk 1 (8) fits in half, chunk 1 and its hop 2 (8 + 7 = 15) do not
        const hop = {count: 1, continuations: false, hops: 1};
        assert.deepEqual(questionFocus(chunks, t(12, 13), {...hop, maxShare: 0.5}), [1]);
        assert.deepEqual(questionFocus(chunks, t(12, 13), hop), [1], "half by default");
        assert.deepEqual(questionFocus(chunks, t(12, 13), {...hop, maxShare: 0.2}), [], "not even the first chunk fits");
        // a later, smaller chunk still fits after a larger one was left out
        const sized: FocusChunk[] = [{tokens: t(...common, 10, 60, 61, 62, 63, 64, 65, 66, 67)}, {tokens: t(...common, 10)}, {tokens: t(70, 71, 72, 73, 74, 75)}];
        assert.deepEqual(questionFocus(sized, t(10), {count: 2, continuations: false, hops: 0, maxShare: 0.3}), [1]);
    });
});
