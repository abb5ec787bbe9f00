import assert from "node:assert/strict";
import {describe, it} from "node:test";
import type {Token} from "node-llama-cpp";
import {focusFirstOrder, inFocusOrder, renumbered} from "../../main/engine/blend/focus-order.js";
import type {BuiltPrompt, PromptSegment} from "../../main/engine/prompt.js";

const t = (...ids: number[]) => ids as Token[];
const hopOff = {count: 1, continuations: false, hops: 0, maxShare: 1};

/** [bos][label][chunk]...[question], as buildPrompt lays a base model's prompt out (labels 90+n, common words 1-3). */
function promptOf(chunks: number[][], question: number[]): BuiltPrompt {
    const segments: PromptSegment[] = [{kind: "fixed", tokens: t(0)}];
    chunks.forEach((tokens, index) => {
        segments.push({kind: "fixed", tokens: t(90 + index)});
        segments.push({kind: "chunk", text: `chunk ${index}`, tokens: t(...tokens), source: {n: index + 1, path: `/d${index}.md`}});
    });
    segments.push({kind: "fixed", tokens: t(...question)});
    return {tokens: segments.flatMap((segment) => segment.tokens), segments};
}

describe("the order of a blend's sources (focus-order.ts)", () => {
    const chunks = [[1, 2, 3, 10], [1, 2, 3, 20, 30], [1, 2, 3, 30], [1, 2, 3, 40]];

    it("puts the chunks the question is about first, in prompt order, then the others", () => {
        assert.deepEqual(focusFirstOrder(promptOf(chunks, [40]), 4, hopOff), [3, 0, 1, 2]);
        // two chosen: they keep their own order ahead of the rest
        assert.deepEqual(focusFirstOrder(promptOf(chunks, [40, 20]), 4, {...hopOff, count: 2}), [1, 3, 0, 2]);
        // with the hop: 20's chunk names 30, which only chunk 2 shares with it
        assert.deepEqual(focusFirstOrder(promptOf(chunks, [20]), 4, {...hopOff, hops: 1}), [1, 2, 0, 3]);
    });

    it("keeps the prompt's order when the focus is first already, nothing is chosen, or a source has no chunk", () => {
        assert.equal(focusFirstOrder(promptOf(chunks, [10]), 4, hopOff), null);
        assert.equal(focusFirstOrder(promptOf(chunks, [99]), 4, hopOff), null);
        assert.equal(focusFirstOrder(promptOf(chunks, [40]), 4, {...hopOff, count: 0}), null);
        // five sources, four chunks: an empty source's place among the chunks is unknown
        assert.equal(focusFirstOrder(promptOf(chunks, [40]), 5, hopOff), null);
    });

    it("rebuilds the prompt from the renumbered sources only when the order changes", () => {
        const sources = chunks.map((_, index) => ({n: index + 1, path: `/d${index}.md`}));
        const built: Array<typeof sources> = [];
        const build = (moved: typeof sources) => {
            built.push(moved);
            return promptOf(moved.map(({path}) => chunks[Number(/\d+/.exec(path)![0])]!), [40]);
        };
        const moved = inFocusOrder(promptOf(chunks, [40]), sources, hopOff, undefined, build);
        assert.deepEqual(moved.order, [3, 0, 1, 2]);
        assert.deepEqual(moved.sources.map(({n, path}) => [n, path]), [[1, "/d3.md"], [2, "/d0.md"], [3, "/d1.md"], [4, "/d2.md"]]);
        assert.deepEqual(built, [moved.sources]);
        assert.deepEqual(moved.prompt.segments.flatMap((segment) => segment.kind === "chunk" ? [segment.tokens.at(-1)] : []), [40, 10, 30, 30]);
        const kept = promptOf(chunks, [10]);
        const same = inFocusOrder(kept, sources, hopOff, undefined, build);
        assert.equal(same.prompt, kept);
        assert.equal(same.order, null);
        assert.equal(built.length, 1, "not rebuilt when the focus is first already");
    });

    it("renumbers the sources in their new places", () => {
        const sources = [{n: 1, path: "a"}, {n: 2, path: "b"}, {n: 3, path: "c"}];
        assert.deepEqual(renumbered(sources, [2, 0, 1]), [{n: 1, path: "c"}, {n: 2, path: "a"}, {n: 3, path: "b"}]);
        assert.deepEqual(sources.map((source) => source.n), [1, 2, 3], "the input is left as it was");
    });
});
