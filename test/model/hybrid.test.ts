import assert from "node:assert/strict";
import {rm, writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import * as lancedb from "@lancedb/lancedb";
import {ChatRequest} from "../../main/contract/index.js";
import {Engine} from "../../main/engine/engine.js";
import {collectEvents, lastEvent} from "../helpers/collect.js";
import {tinyRandomLlama2Path} from "../helpers/paths.js";
import {type EngineFolder, openEngineWithFolder} from "../helpers/engine-folder.js";

async function vectorTables(dataDir: string): Promise<Map<string, number>> {
    const db = await lancedb.connect(path.join(dataDir, "library"));
    try {
        const counts = new Map<string, number>();
        for (const name of (await db.tableNames()).filter((table) => table.startsWith("vectors_")))
            counts.set(name, await (await db.openTable(name)).countRows());

        return counts;
    } finally {
        db.close();
    }
}

describe("hybrid retrieval with a GGUF embedding model", () => {
    let setup: EngineFolder;
    let folder: string;
    let dataDir: string;
    let engine: Engine;

    before(async () => {
        setup = await openEngineWithFolder({
            "lily.md": "# Lily\n\nLily went to the park with her mom and saw a big red ball.\n",
            "tim.md": "# Tim\n\nTim had a little boat. He sailed it on the pond every day.\n",
            "sue.md": "# Sue\n\nSue baked a cake for her friend. It was sweet and yummy.\n"
        }, {models: [tinyRandomLlama2Path]});
        ({engine, folder, dataDir} = setup);
    });

    after(async () => {
        await setup?.cleanup();
    });

    async function ingest() {
        const events = await collectEvents(engine.ingestFolder({path: folder}, new AbortController().signal) as never);
        const last = events.at(-1) as unknown as {type: string, summary: {chunks: number}};
        assert.equal(last.type, "done", JSON.stringify(last));
        return last.summary;
    }

    it("embeds every chunk and answers from fused full-text and vector results", async () => {
        const status = await engine.setEmbeddingModel({id: "stories260k"});
        assert.equal(status.embeddingModelId, "stories260k");
        const summary = await ingest();
        const tables = await vectorTables(dataDir);
        assert.equal(tables.size, 1);
        assert.equal([...tables.values()][0], summary.chunks);

        const events = await collectEvents(engine.chat(ChatRequest.parse({question: "boat pond", maxTokens: 4}), new AbortController().signal));
        const done = lastEvent(events, "done");
        assert.equal(done.citations[0]?.path, path.join(folder, "tim.md"));
        // Reciprocal-rank fusion scores: a hit from both lists beats any hit from one.
        assert.ok(done.citations[0]!.score > 1 / 61, String(done.citations[0]!.score));
        assert.equal(done.citations.length, 3, "the vector side brings in chunks without a word in common");
    });

    it("keeps vectors in step with changed and deleted files", async () => {
        await rm(path.join(folder, "sue.md"));
        await writeFile(path.join(folder, "tim.md"), "# Tim\n\nTim had a little boat. He sailed it on the pond every day.\n\nThen a duck came.\n");
        const summary = await ingest();
        const tables = await vectorTables(dataDir);
        assert.equal([...tables.values()][0], summary.chunks);
    });

    it("re-embeds into a separate table when the embedding model changes", async () => {
        await engine.setEmbeddingModel({id: "llama-2-tiny-random"});
        const summary = await ingest();
        const tables = await vectorTables(dataDir);
        assert.equal(tables.size, 2);
        assert.deepEqual([...tables.values()], [summary.chunks, summary.chunks]);

        await engine.setEmbeddingModel({id: null});
        const events = await collectEvents(engine.chat(ChatRequest.parse({question: "boat pond", maxTokens: 4}), new AbortController().signal));
        assert.deepEqual(lastEvent(events, "done").citations.map((citation) => path.basename(citation.path)), ["tim.md"]);
    });
});
