import assert from "node:assert/strict";
import {after, before, describe, it} from "node:test";
import {getLlama, type Llama, type LlamaModel} from "node-llama-cpp";
import {buildPrompt, type ChunkTokenMemo, type PromptSource} from "../../main/engine/prompt.js";
import {renumbered} from "../../main/engine/blend/focus-order.js";
import {tinyRandomLlama2Path} from "../helpers/paths.js";

const sources: PromptSource[] = [
    {n: 1, path: "notes/a.md", text: "Mira keeps the lighthouse on Oster Point. Its lamp turns twice a minute."},
    {n: 2, path: "notes/b.md", text: "The ferry to Oster Point leaves at seven, café hours permitting — ünïcode too."},
    {n: 3, path: "notes/c.md", text: "Tomas repairs nets in the harbour; he learned it from Mira's father."}
];

/** A model whose tokenize calls are counted per text (the real tokenizer still does the work). */
function counting(model: LlamaModel): {model: LlamaModel, calls: Map<string, number>} {
    const calls = new Map<string, number>();
    const proxy = new Proxy(model, {
        get(target, key, receiver) {
            if (key === "tokenize")
                return (text: string, ...rest: unknown[]) => {
                    calls.set(text, (calls.get(text) ?? 0) + 1);
                    return (target.tokenize as (...args: unknown[]) => unknown)(text, ...rest);
                };
            const value = Reflect.get(target, key, receiver) as unknown;
            return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
        }
    });
    return {model: proxy, calls};
}

describe("a prompt rebuilt with the chunk tokens of an earlier build (llama-2-tiny-random's tokenizer)", () => {
    let llama: Llama;
    let model: LlamaModel;

    before(async () => {
        llama = await getLlama({gpu: false, build: "never"});
        model = await llama.loadModel({modelPath: tinyRandomLlama2Path});
    });
    after(async () => {
        await model?.dispose();
    });

    for (const hasChatTemplate of [false, true]) {
        it(`gives the tokens a fresh build gives, and tokenizes no chunk twice (chat template: ${hasChatTemplate})`, () => {
            const {model: counted, calls} = counting(model);
            const memo: ChunkTokenMemo = new Map();
            const first = buildPrompt(counted, "Who keeps the lighthouse?", sources, hasChatTemplate, memo);
            assert.deepEqual(first.tokens, buildPrompt(model, "Who keeps the lighthouse?", sources, hasChatTemplate).tokens);

            const moved = renumbered(sources, [2, 0, 1]);
            const again = buildPrompt(counted, "Who keeps the lighthouse?", moved, hasChatTemplate, memo);
            const fresh = buildPrompt(model, "Who keeps the lighthouse?", moved, hasChatTemplate);
            assert.deepEqual(again.tokens, fresh.tokens);
            assert.deepEqual(again.segments.map((segment) => segment.kind), fresh.segments.map((segment) => segment.kind));
            for (const source of sources)
                assert.equal(calls.get(source.text), 1, `"${source.text.slice(0, 20)}…" was tokenized ${calls.get(source.text)} times`);
            // the labels changed with the order, and are tokenized anew
            assert.ok([...calls.keys()].some((text) => text.startsWith("[1] notes/c.md")));
        });
    }
});
