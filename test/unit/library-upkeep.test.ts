import assert from "node:assert/strict";
import {mkdir, readdir, stat, writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {ingestFolder} from "../../main/engine/library/ingest.js";
import {estimateTokenizer} from "../../main/engine/library/library.js";
import {LibraryStore} from "../../main/engine/library/store.js";
import {makeTempDir} from "../helpers/paths.js";

async function folderBytes(dir: string): Promise<number> {
    let total = 0;
    for (const entry of await readdir(dir, {withFileTypes: true})) {
        const full = path.join(dir, entry.name);
        total += entry.isDirectory() ? await folderBytes(full) : (await stat(full)).size;
    }
    return total;
}

const note = (index: number, round: number) => `# Note ${index}\n\n` + Array.from({length: 40}, (_, line) =>
    `Round ${round}: line ${line} of note ${index} records the tide at ${(index * 7 + line * 3 + round) % 97} centimetres.`).join("\n");

describe("library upkeep keeps the data folder near the size of a fresh ingest", () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;

    before(async () => {
        temp = await makeTempDir();
    });

    after(async () => {
        await temp.cleanup();
    });

    const ingest = async (dataDir: string, folder: string) => {
        const store = await LibraryStore.open(dataDir);
        try {
            return await ingestFolder(store, folder, {dataDir, countTokens: estimateTokenizer.countTokens, tokenizer: "estimate", versionGraceMs: 0});
        } finally {
            store.close();
        }
    };

    it("after 17 rounds of edits the library is within 3x of a fresh ingest of the same files", async (t) => {
        const folder = path.join(temp.dir, "docs");
        await mkdir(folder);
        for (let index = 0; index < 30; index++)
            await writeFile(path.join(folder, `note-${index}.md`), note(index, 0));

        const edited = path.join(temp.dir, "edited");
        await ingest(edited, folder);
        for (let round = 1; round <= 17; round++) {
            const changed = new Set([round % 30, (round * 7) % 30, (round * 11) % 30]);
            for (const index of changed)
                await writeFile(path.join(folder, `note-${index}.md`), note(index, round));
            const summary = await ingest(edited, folder);
            assert.equal(summary.changedFiles, changed.size);
        }

        const fresh = path.join(temp.dir, "fresh");
        await ingest(fresh, folder);
        const editedBytes = await folderBytes(path.join(edited, "library"));
        const freshBytes = await folderBytes(path.join(fresh, "library"));
        t.diagnostic(`edited library ${editedBytes} bytes, fresh ${freshBytes} bytes`);
        assert.ok(editedBytes <= 3 * freshBytes, `edited library ${editedBytes} bytes, fresh ${freshBytes} bytes`);
    });
});
