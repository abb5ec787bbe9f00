import assert from "node:assert/strict";
import {describe, it} from "node:test";
import {ChatRequest} from "../../main/contract/index.js";
import {autoStrategy, resolveStrategy} from "../../main/engine/blend/auto.js";

describe("strategy auto", () => {
    it("a question that names no strategy, or auto, gets the measured default with its own ratio", () => {
        for (const requested of [undefined, "auto"] as const) {
            const request = ChatRequest.parse({question: "q", ...(requested != null ? {strategy: requested} : {}), ratio: 0.9});
            assert.deepEqual(resolveStrategy(request.strategy, request.ratio), autoStrategy);
        }
    });

    it("a named strategy is kept with the request's ratio", () => {
        const request = ChatRequest.parse({question: "q", strategy: "chunk-head", ratio: 0.3});
        assert.deepEqual(resolveStrategy(request.strategy, request.ratio), {strategy: "chunk-head", ratio: 0.3});
    });

    it("an unknown strategy is refused by the contract", () => {
        assert.equal(ChatRequest.safeParse({question: "q", strategy: "fastest"}).success, false);
    });
});
