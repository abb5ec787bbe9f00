// End to end: add a folder through the library panel of the real `weft serve`, watch it index, see what it
// could not read and why, then ask about it and follow the answer's citation back to the file.
import assert from "node:assert/strict";
import {mkdir, writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import type {Browser, BrowserContext} from "playwright-core";
import {ChatPage} from "./pages/chat-page.js";
import {LibraryPage} from "./pages/library-page.js";
import {repoRoot, tinyModelPath, type RunningServer} from "./support/serve.js";
import {startServedApp, stopServedApp} from "./support/served-app.js";

const screenshotPath = path.join(repoRoot, "test/.tmp/screenshots/library.png");

/** Three Markdown files with words no other file has, one binary file (NUL bytes) and one corrupt PDF. */
async function writeDocuments(folder: string): Promise<void> {
    await writeFile(path.join(folder, "zanzibar.md"), [
        "# Zanzibar lighthouse keepers",
        "",
        "The zanzibar lighthouse keepers climb the spiral stairs every evening to trim the wick of the great lamp.",
        "Each keeper logs passing dhows in a leather ledger and polishes the brass lens with coconut oil.",
        "",
        "## Relief",
        "",
        "A relief keeper arrives by boat from Stone Town every fortnight."
    ].join("\n"));
    await writeFile(path.join(folder, "quince.md"), [
        "# Quince orchard pruning",
        "",
        "Prune quince trees in late winter, cutting crossing branches back to an outward-facing bud."
    ].join("\n"));
    await mkdir(path.join(folder, "notes"));
    await writeFile(path.join(folder, "notes", "glacier.md"), [
        "# Glacier cartography",
        "",
        "Surveyors map crevasse fields on the glacier with theodolites and weighted ropes."
    ].join("\n"));
    // No extension: the engine sniffs the bytes, finds NULs and skips the file as binary.
    await writeFile(path.join(folder, "blob"), Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x00, 0x00, 0x01, 0x02, 0x00, 0xff, 0xfe, 0x00]));
    await writeFile(path.join(folder, "broken.pdf"), "%PDF-1.4 garbage");
}

describe("the library in the browser (weft serve)", () => {
    let dataDir = "";
    let docsDir = "";
    let server: RunningServer | undefined;
    let browser: Browser | undefined;

    before(async () => {
        ({dataDir, docsDir, server, browser} = await startServedApp(tinyModelPath, writeDocuments));
    });

    after(async () => {
        await stopServedApp({browser, server, dataDir, docsDir});
    });

    it("indexes a folder added in the panel, lists its problems and cites it in answers", {timeout: 180_000}, async () => {
        const context: BrowserContext = await browser!.newContext({viewport: {width: 1280, height: 860}});
        const page = await context.newPage();
        const logs: string[] = [];
        page.on("pageerror", (error) => logs.push(`[page error] ${error.message}`));
        page.on("console", (message) => logs.push(`[console.${message.type()}] ${message.text()}`));
        const chat = new ChatPage(page);
        const library = new LibraryPage(page);
        try {
            await chat.open(server!.url);
            await chat.waitUntilConnected();
            await chat.ensureModelSelected();

            // Ctrl+L opens and closes the panel; so does the header button.
            assert.equal(await library.isOpen(), false, "the library starts closed");
            await library.pressShortcut();
            await library.panel.waitFor();
            assert.equal(await library.toggle.getAttribute("aria-pressed"), "true");
            await library.empty.waitFor();
            await library.pressShortcut();
            await library.panel.waitFor({state: "detached"});
            await library.open();

            // The panel focuses the path box: typing and Enter add the folder.
            const firstRun = await library.addFolder(docsDir);
            const indexed = await library.waitForIngestEnd(firstRun, 120_000);
            assert.equal(indexed.state, "done", `indexing should finish: ${indexed.text}`);
            assert.match(indexed.text, /Indexed .+: 3 files/);
            assert.equal(await library.pathInput.inputValue(), "", "the path box is cleared once the folder is added");

            const row = library.row(docsDir);
            await row.waitFor();
            assert.equal(await library.files(docsDir), 3, "the three Markdown files are indexed");
            assert.ok(await library.chunks(docsDir) >= 3, `at least a chunk a file, got ${await library.chunks(docsDir)}`);
            const rowText = (await row.textContent()) ?? "";
            assert.match(rowText, /3 files/);
            assert.match(rowText, /indexed just now/);

            const errors = await library.problems(docsDir, "errors");
            assert.deepEqual(errors.map((entry) => entry.path), [path.join(docsDir, "broken.pdf")]);
            assert.match(errors[0]!.text, /broken\.pdf/);
            assert.match(errors[0]!.text, /corrupt PDF/i, `the reason is shown: ${errors[0]!.text}`);
            const skipped = await library.problems(docsDir, "skipped");
            assert.deepEqual(skipped.map((entry) => entry.path), [path.join(docsDir, "blob")]);
            assert.match(skipped[0]!.text, /binary/i, `the reason is shown: ${skipped[0]!.text}`);

            // The answer cites the zanzibar file: "[n] zanzibar.md", full path as the tooltip, passage on demand.
            await chat.ask("zanzibar lighthouse");
            const answer = await chat.waitForAnswer();
            assert.equal(answer.status, "done");
            const zanzibarPath = path.join(docsDir, "zanzibar.md");
            const citation = chat.turn().locator(`[data-testid="citation"][data-path=${JSON.stringify(zanzibarPath)}]`).first();
            await citation.waitFor();
            assert.match((await citation.locator(".citation-line").innerText()).trim(), /^\[\d+\] zanzibar\.md$/);
            assert.equal(await citation.locator(".citation-path").getAttribute("title"), zanzibarPath);
            const firstCited = chat.turn().getByTestId("citation").first();
            assert.equal(await firstCited.getAttribute("data-path"), zanzibarPath, "the best match is the zanzibar file");
            await citation.locator("summary").click();
            const excerpt = citation.getByTestId("citation-text");
            await excerpt.waitFor();
            assert.match((await excerpt.textContent()) ?? "", /lighthouse keepers/i);

            // The same question through CacheBlend: the retrieved chunks' KV is reused, a share recomputed.
            await chat.chooseStrategy("hkvd", 0.3);
            await chat.ask("zanzibar lighthouse");
            assert.equal((await chat.waitForAnswer()).status, "done");
            assert.equal(await chat.stat("strategy"), "hkvd", await chat.stats().textContent() ?? "");
            const reused = Number(await chat.stat("reusedTokens"));
            const recomputed = Number(await chat.stat("recomputedTokens"));
            const fresh = Number(await chat.stat("freshTokens"));
            // Every source but the first gets a share recomputed; the first comes as its lead version, exact as cached
            // (the only source here when retrieval finds one chunk).
            const exact = await chat.stats().locator('[data-stat="exactSources"]').count() > 0 ? await chat.stat("exactSources") : null;
            assert.ok(reused > 0 && (recomputed > 0 || exact === "1"), `reused ${reused}, recomputed ${recomputed}, exact ${exact}`);
            assert.equal(reused + recomputed + fresh, Number(await chat.stat("promptTokens")));
            assert.ok(Number(await chat.stat("kvLoadGBps")) >= 0);

            await mkdir(path.dirname(screenshotPath), {recursive: true});
            await page.screenshot({path: screenshotPath});
            console.log(`screenshot: ${screenshotPath}`);

            // Re-index looks at the same folder again: nothing changed, the counts stay.
            const secondRun = await library.reindex(docsDir);
            const again = await library.waitForIngestEnd(secondRun, 120_000);
            assert.equal(again.state, "done", again.text);
            assert.equal(await library.files(docsDir), 3);
            assert.equal(await library.folderRows.count(), 1, "re-indexing does not add a second row");

            // A stream error (a folder that does not exist) shows inline, in the panel.
            const missing = path.join(docsDir, "no-such-folder");
            const thirdRun = await library.addFolder(missing);
            const failed = await library.waitForIngestEnd(thirdRun);
            assert.equal(failed.state, "error");
            assert.match((await library.ingestError.textContent()) ?? "", /no-such-folder/);
            assert.equal(await library.folderRows.count(), 1);

            // Remove asks first; Keep leaves the folder alone.
            await row.getByTestId("remove-folder").click();
            await row.getByTestId("keep-folder").click();
            assert.equal(await library.folderRows.count(), 1);
            await library.remove(docsDir);
            await library.empty.waitFor();
        } catch (error) {
            console.error([...logs, "--- weft serve output ---", server?.output() ?? ""].join("\n"));
            throw error;
        } finally {
            await context.close();
        }
    });
});
