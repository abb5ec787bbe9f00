// Model families through the engine and the CLI: `listModels` (and `weft models list`) says for each model whether it
// can blend and why not; a Llama 3 model (rope_freqs.weight) answers with hkvd reusing chunk KVs; a gemma3 model
// (sliding-window layers) answers with exact prefix reuse, and its stats name the model and the reason, no error.
import assert from "node:assert/strict";
import {existsSync} from "node:fs";
import {copyFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {AnswerStats, AskResult, ChatRequest, ListedModel} from "../../main/contract/index.js";
import {BlendSession} from "../../main/engine/blend/blend.js";
import {ModelBlendSupportCache} from "../../main/engine/model-blend-support.js";
import {ensureFixtureModel, fixturePresets, makeTinyLlama} from "../fixtures/make-tiny-models.js";
import {blendSkipReason} from "../helpers/blend-prompt.js";
import {collectEvents, lastEvent} from "../helpers/collect.js";
import {type EngineFolder, openEngineWithFolder} from "../helpers/engine-folder.js";
import {makeTempDir, weftBin} from "../helpers/paths.js";
import {weft} from "../helpers/weft-cli.js";

const stories = [
    "Lily had a red ball. She played with it in the park every morning before school.",
    "Tom the dog liked to dig holes in the garden. One day he found an old shiny key.",
    "Mom baked cookies for the party. Lily and Tom ate them under the big green tree."
];

const gemmaReason = /^model "weft tiny gemma3 [^"]+" \(gemma3\) cannot blend: .*sliding-window attention layers/;

describe("model families through the engine (patched build)", {skip: blendSkipReason()}, () => {
    let setup: EngineFolder;
    let llama3Path: string;
    let gemma3Path: string;

    before(async () => {
        llama3Path = await ensureFixtureModel("llama3-tiny");
        gemma3Path = await ensureFixtureModel("gemma3-tiny");
        setup = await openEngineWithFolder(Object.fromEntries(stories.map((text, index) => [`story-${index + 1}.txt`, `${text}\n`])),
            {models: [llama3Path, gemma3Path]});
        await collectEvents(setup.engine.ingestFolder({path: setup.folder}, new AbortController().signal) as never);
    });

    after(async () => {
        await setup?.cleanup();
    });

    const idOf = async (modelPath: string) => (await setup.engine.listModels()).find((model) => model.path === modelPath)!.id;

    const ask = async (modelId: string, strategy: ChatRequest["strategy"]) =>
        lastEvent(await collectEvents(setup.engine.chat(ChatRequest.parse({question: "Lily Tom", maxTokens: 8, strategy, ratio: 0.15, topK: 3, modelId}),
            new AbortController().signal)), "done");

    it("listModels says which models can blend, and why the others cannot", async () => {
        const models = ListedModel.array().parse(await setup.engine.listModels());
        const byPath = new Map(models.map((model) => [model.path, model.blend]));
        assert.deepEqual(byPath.get(llama3Path), {canBlend: true, reason: null});
        assert.equal(models[0]!.blend.canBlend, true, "stories260K");
        const gemma = byPath.get(gemma3Path)!;
        assert.equal(gemma.canBlend, false);
        assert.match(gemma.reason!, gemmaReason);
    });

    it("a Llama 3 model (rope_freqs.weight) answers with hkvd, reusing chunk KVs", async () => {
        const done = await ask(await idOf(llama3Path), "hkvd");
        const stats = AnswerStats.parse(done.stats);
        assert.equal(stats.strategy, "hkvd", stats.strategyFallbackReason);
        assert.equal(stats.strategyFallbackReason, undefined);
        assert.ok(stats.reusedTokens > 0 && stats.recomputedTokens > 0, JSON.stringify(stats));
        assert.equal(done.citations.length, 3);
    });

    it("a blend that fails mid-way answers with prefix reuse and says why; the next question blends again", async () => {
        const prepare = BlendSession.prototype.prepare;
        BlendSession.prototype.prepare = () => Promise.reject(new Error("device lost"));
        let done;
        try {
            done = await ask(await idOf(llama3Path), "hkvd");
        } finally {
            BlendSession.prototype.prepare = prepare;
        }
        assert.equal(done.stats.strategy, "prefix");
        assert.equal(done.stats.strategyFallbackReason, "hkvd unavailable: the blend failed (device lost); used exact prefix reuse");
        assert.equal(done.stats.completionTokens, 8);
        const again = await ask(await idOf(llama3Path), "hkvd");
        assert.equal(again.stats.strategy, "hkvd", again.stats.strategyFallbackReason);
    });

    for (const strategy of ["hkvd", "naive"] as const)
        it(`a gemma3 model answers a ${strategy} question with prefix reuse and says why`, async () => {
            const done = await ask(await idOf(gemma3Path), strategy);
            const stats = AnswerStats.parse(done.stats);
            // (Prefix reuse may reuse the previous question's prompt: reused tokens are exact here.)
            assert.equal(stats.strategy, "prefix");
            assert.equal(stats.recomputedTokens, 0);
            assert.match(stats.strategyFallbackReason ?? "",
                new RegExp(`^${strategy} unavailable: model "weft tiny gemma3 [^"]+" \\(gemma3\\) cannot blend: .*sliding-window attention layers.*; used exact prefix reuse$`));
            assert.equal(stats.completionTokens, 8);
        });

    it("`weft models list` shows whether each model can blend, with the reason; `weft ask --strategy hkvd --json` on llama3-tiny blends", {skip: existsSync(weftBin.replace(/bin\/weft\.js$/, "dist/weft.js")) ? false : "needs `npm run build`"}, async () => {
        const text = await weft(["models", "list", "--data", setup.dataDir]);
        assert.equal(text.code, 0, text.stderr);
        const lines = text.stdout.trimEnd().split("\n");
        const llama3 = lines.find((line) => line.includes(llama3Path))!;
        assert.match(llama3, /\s blend\s+\//);
        const gemmaAt = lines.findIndex((line) => line.includes(gemma3Path));
        assert.match(lines[gemmaAt]!, /\sno blend\s+\//);
        assert.match(lines[gemmaAt + 1]!.trim(), new RegExp(`${gemmaReason.source.slice(1)}.*; it answers with exact prefix reuse$`));

        const asked = await weft(["ask", "--data", setup.dataDir, "--model", await idOf(llama3Path), "--strategy", "hkvd", "--json",
            "--max-tokens", "4", "--threads", "1", "--gpu", "cpu", "Lily Tom"]);
        assert.equal(asked.code, 0, asked.stderr);
        const answer = AskResult.parse(JSON.parse(asked.stdout.trim().split("\n").at(-1)!));
        assert.equal(answer.stats.strategy, "hkvd", answer.stats.strategyFallbackReason);
        assert.ok(answer.stats.reusedTokens > 0, JSON.stringify(answer.stats));

        const added = await weft(["models", "add", gemma3Path, "--data", setup.dataDir]);
        assert.equal(added.code, 0, added.stderr);
        assert.match(added.stdout, new RegExp(`\\nNote: ${gemmaReason.source.slice(1)}.*; it answers with exact prefix reuse\\n$`));

        const json = await weft(["models", "list", "--json", "--data", setup.dataDir]);
        assert.equal(json.code, 0, json.stderr);
        const listed = ListedModel.array().parse(JSON.parse(json.stdout));
        assert.deepEqual(listed.map((model) => model.blend.canBlend), [true, true, false]);
    });
});

describe("whether a model can blend, as listModels reads it from the file", () => {
    it("says so for a missing file, and reads a replaced file again", async () => {
        const temp = await makeTempDir();
        try {
            const modelPath = path.join(temp.dir, "model.gguf");
            const info = {id: "m", name: "My Model", path: modelPath, sizeBytes: 0, architecture: null, contextLength: null,
                hasChatTemplate: false, addedAt: new Date(0).toISOString()};
            const supports = new ModelBlendSupportCache();
            assert.match((await supports.of(info)).reason ?? "", /^model "My Model" cannot blend: its file is missing/);

            await copyFile(await ensureFixtureModel("phi3-tiny"), modelPath);
            assert.deepEqual(await supports.of(info), {canBlend: true, reason: null});

            // The same path now holds a gemma3 model (a smaller vocab than the preset's; only the metadata matters here).
            await makeTinyLlama({...fixturePresets["gemma3-tiny"], vocab: "phi-3", outPath: modelPath});
            const replaced = await supports.of(info);
            assert.equal(replaced.canBlend, false);
            assert.match(replaced.reason ?? "", /^model "My Model" \(gemma3\) cannot blend: .*sliding-window attention layers/);
        } finally {
            await temp.cleanup();
        }
    });
});
