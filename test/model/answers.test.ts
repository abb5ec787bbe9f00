import assert from "node:assert/strict";
import {mkdir, writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {AskResult, IngestSummary} from "../../main/contract/index.js";
import {autoStrategy} from "../../main/engine/blend/auto.js";
import {citedSources, exactMatch, exampleFiles, makeExample, seededRandom, splitOfName} from "../fixtures/answer-corpus.js";
import {answerModelMissing, answerModelPath} from "../fixtures/answer-model.js";
import {makeTempDir, testThreads} from "../helpers/paths.js";
import {weft} from "../helpers/weft-cli.js";

// Weft's answer model answers a held-out question about an ingested folder: the whole product path (ingest, retrieval,
// prompt, strategy, generation) gives the gold answer and cites the file that holds it.
describe("weft ask with the answer model (held-out question, ingested folder)", {skip: answerModelMissing() ?? false}, () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;

    before(async () => {
        temp = await makeTempDir();
    });

    after(async () => {
        await temp.cleanup();
    });

    it("answers with the gold answer and cites the gold document", async () => {
        // A one-hop question among four documents: the engine's default topK of 4 retrieves them all, in its own order.
        const example = makeExample(seededRandom(2024), "held-out", "one-hop", 4);
        const entity = example.question.replace(/^(Where does|Who does|When was|What is|Where are the headquarters of|How many people does) /, "")
            .replace(/( live| work for| born| founded| employ|'s job)?\?$/, "");
        assert.equal(splitOfName(entity), "held-out", `the question's entity ${entity} is in the held-out split`);
        const goldFile = example.chunks[example.answerSource - 1]!.path.split("/").at(-1)!;

        const folder = path.join(temp.dir, "docs");
        await mkdir(folder, {recursive: true});
        for (const [name, text] of exampleFiles(example))
            await writeFile(path.join(folder, name), text);
        const ingested = await weft(["ingest", folder, "--data", temp.dir, "--json"]);
        assert.equal(ingested.code, 0, ingested.stderr);
        const summary = IngestSummary.parse(JSON.parse(ingested.stdout.trim().split("\n").at(-1)!));
        assert.equal(summary.files, exampleFiles(example).size);

        const asked = await weft(["ask", "--data", temp.dir, "--model", answerModelPath, "--json", "--max-tokens", "24",
            "--threads", String(testThreads), example.question]);
        assert.equal(asked.code, 0, asked.stderr);
        const result = AskResult.parse(JSON.parse(asked.stdout));
        assert.ok(exactMatch(result.answer, example.answer), `answer ${JSON.stringify(result.answer)}, gold ${JSON.stringify(example.target)}`);
        const cited = citedSources(result.answer)[0];
        assert.ok(cited != null, `the answer cites no source: ${JSON.stringify(result.answer)}`);
        const citation = result.citations.find((entry) => entry.n === cited);
        assert.equal(path.basename(citation?.path ?? ""), goldFile, `cited [${cited}] of ${JSON.stringify(result.citations.map((c) => [c.n, c.path]))}`);
        // The default strategy (auto.ts) blends cached chunk KVs: the gold source is recomputed whole and put first,
        // numbered [1], and the answer cites it by that number.
        assert.equal(result.stats.strategy, autoStrategy.strategy, result.stats.strategyFallbackReason);
        assert.ok(result.stats.reusedTokens > 0, "chunk KVs reused");
        assert.deepEqual(result.stats.focusSources, [cited]);
        assert.equal(cited, 1);
    });
});
