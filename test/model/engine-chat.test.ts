import assert from "node:assert/strict";
import {writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {getLlama} from "node-llama-cpp";
import {AnswerStats, ChatEvent, ChatRequest, EngineError} from "../../main/contract/index.js";
import {Engine} from "../../main/engine/engine.js";
import {collectEvents, lastEvent} from "../helpers/collect.js";
import {makeTempDir, stories260kPath, testThreads} from "../helpers/paths.js";

describe("engine chat on stories260K (real weights, CPU)", () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let engine: Engine;

    before(async () => {
        temp = await makeTempDir();
        engine = await Engine.open({dataDir: temp.dir, threads: testThreads, gpu: false});
    });

    after(async () => {
        await engine.close();
        await temp.cleanup();
    });

    it("refuses to answer before a model exists, with a clear error", async () => {
        const events = await collectEvents(engine.chat(ChatRequest.parse({question: "hello"}), new AbortController().signal));
        assert.equal(events.length, 1);
        const error = lastEvent(events, "error");
        assert.equal(error.error.code, "no_model");
        assert.match(error.error.message, /weft models add/);
    });

    it("rejects a file that is not a GGUF model and keeps working", async () => {
        const notModel = path.join(temp.dir, "notes.gguf");
        await writeFile(notModel, "just some text, not a model");
        await assert.rejects(engine.addModel({path: notModel}), (error: unknown) =>
            error instanceof EngineError && error.code === "model_invalid" && /not a GGUF/.test(error.message));
        await assert.rejects(engine.addModel({path: path.join(temp.dir, "missing.gguf")}), (error: unknown) =>
            error instanceof EngineError && error.code === "model_missing");
        assert.deepEqual(await engine.listModels(), []);
    });

    it("streams a greedy answer through the model, with stats that add up", async () => {
        const info = await engine.addModel({path: stories260kPath});
        assert.equal(info.architecture, "llama");
        assert.equal(info.hasChatTemplate, false);

        const events = await collectEvents(engine.chat(ChatRequest.parse({question: "Once upon a time", maxTokens: 40, strategy: "full"}), new AbortController().signal));
        for (const event of events)
            ChatEvent.parse(event);

        const types = events.map((event) => event.type);
        assert.equal(types[0], "retrieval");
        assert.equal(types[1], "cacheStats");
        assert.equal(types.at(-1), "done");
        const tokens = events.filter((event) => event.type === "token");
        assert.ok(tokens.length >= 5, `expected several streamed chunks, got ${tokens.length}`);

        const done = lastEvent(events, "done");
        assert.equal(done.answer, tokens.map((event) => event.text).join(""));
        // The real TinyStories weights continue this prompt the same way every time under greedy sampling.
        assert.ok(done.answer.startsWith(", there was a little girl named Lily"), done.answer);

        const stats = AnswerStats.parse(done.stats);
        // BOS plus the SentencePiece pieces of the question, counted by an independent tokenizer instance.
        const llama = await getLlama({gpu: false, maxThreads: 1});
        const model = await llama.loadModel({modelPath: stories260kPath});
        assert.equal(stats.promptTokens, 1 + model.tokenize("Once upon a time").length);
        await model.dispose();
        assert.equal(stats.freshTokens, stats.promptTokens);
        assert.equal(stats.reusedTokens + stats.recomputedTokens + stats.freshTokens, stats.promptTokens);
        assert.equal(stats.completionTokens, 40);
        assert.equal(stats.backend, "cpu");
        assert.equal(stats.strategy, "full");
        assert.ok(stats.ttftMs > 0 && stats.ttftMs <= stats.totalMs);
        assert.ok(stats.tokensPerSecond > 0);
    });

    it("gives the same greedy answer twice and reports no model load the second time", async () => {
        const ask = async () => lastEvent(await collectEvents(engine.chat(ChatRequest.parse({question: "The dog", maxTokens: 24}), new AbortController().signal)), "done");
        const first = await ask();
        const second = await ask();
        assert.equal(first.answer, second.answer);
        assert.equal(second.stats.modelLoadMs < 50, true);
    });

    it("prefix reuse keeps the shared prompt's KV and answers exactly as a full prefill does", async () => {
        const question = "Once upon a time, there was a little girl named Lily. She loved to play";
        const ask = async (strategy: "full" | "prefix") =>
            lastEvent(await collectEvents(engine.chat(ChatRequest.parse({question, maxTokens: 30, strategy}), new AbortController().signal)), "done");
        const full = await ask("full");
        assert.equal(full.stats.reusedTokens, 0);
        assert.ok(full.stats.fullPrefillEstimateMs > 0);

        const reused = await ask("prefix");
        assert.equal(reused.stats.strategy, "prefix");
        assert.equal(reused.stats.reusedTokens, reused.stats.promptTokens - 1);
        assert.equal(reused.stats.freshTokens, 1);
        assert.equal(reused.answer, full.answer);

        const longer = lastEvent(await collectEvents(engine.chat(ChatRequest.parse({question: `${question} with her dog`, maxTokens: 8, strategy: "prefix"}),
            new AbortController().signal)), "done");
        assert.ok(longer.stats.reusedTokens >= reused.stats.promptTokens - 2, JSON.stringify(longer.stats));
        assert.equal(longer.stats.reusedTokens + longer.stats.freshTokens, longer.stats.promptTokens);
    });

    it("falls back to prefix reuse for a blend strategy when there is nothing to blend, and says why", async () => {
        const done = lastEvent(await collectEvents(engine.chat(ChatRequest.parse({question: "The cat", maxTokens: 4, strategy: "hkvd"}),
            new AbortController().signal)), "done");
        assert.equal(done.stats.strategy, "prefix");
        assert.match(done.stats.strategyFallbackReason ?? "", /hkvd unavailable: no retrieved chunks/);
    });

    it("stops generating when cancelled and says so", async () => {
        const controller = new AbortController();
        const events = await collectEvents(
            engine.chat(ChatRequest.parse({question: "Once upon a time", maxTokens: 500}), controller.signal),
            (event) => {
                if (event.type === "token")
                    controller.abort();
            }
        );
        const done = lastEvent(events, "done");
        assert.equal(done.cancelled, true);
        assert.ok(done.stats.completionTokens < 10, `generated ${done.stats.completionTokens} tokens after cancel`);
    });

    it("refuses a prompt longer than the context and keeps serving", async () => {
        const events = await collectEvents(engine.chat(ChatRequest.parse({question: "tree ".repeat(5000)}), new AbortController().signal));
        const error = lastEvent(events, "error");
        assert.equal(error.error.code, "bad_request");
        assert.match(error.error.message, /context/);

        const again = await collectEvents(engine.chat(ChatRequest.parse({question: "Once upon a time", maxTokens: 8}), new AbortController().signal));
        assert.equal(lastEvent(again, "done").stats.completionTokens, 8);
    });

    it("remembers models and the selection in the data dir", async () => {
        const reopened = await Engine.open({dataDir: temp.dir, threads: testThreads, gpu: false});
        try {
            const models = await reopened.listModels();
            assert.deepEqual(models.map((model) => model.id), ["stories260k"]);
            assert.equal((await reopened.getStatus()).activeModelId, "stories260k");
        } finally {
            await reopened.close();
        }
    });
});
