// End to end with Weft's answer model: a folder of generated documents added in the Library, a held-out question
// asked in the chat (the same one as test/model/answers.test.ts asks through `weft ask`), and the answer must hold the
// gold answer and cite the document that holds it, as the Sources list shows it.
import assert from "node:assert/strict";
import {writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import type {Browser} from "playwright-core";
import {citedSources, exactMatch, exampleFiles, makeExample, seededRandom} from "../fixtures/answer-corpus.js";
import {answerModelMissing, answerModelPath} from "../fixtures/answer-model.js";
import {AppPage} from "./pages/app-page.js";
import {ChatPage} from "./pages/chat-page.js";
import {LibraryPage} from "./pages/library-page.js";
import type {RunningServer} from "./support/serve.js";
import {startServedApp, stopServedApp} from "./support/served-app.js";

describe("the answer model in the browser (weft serve)", {skip: answerModelMissing() ?? false}, () => {
    // A one-hop question among four documents: the engine's default topK of 4 retrieves them all, in its own order.
    const example = makeExample(seededRandom(2024), "held-out", "one-hop", 4);
    const goldFile = example.chunks[example.answerSource - 1]!.path.split("/").at(-1)!;
    let dataDir = "";
    let docsDir = "";
    let server: RunningServer | undefined;
    let browser: Browser | undefined;

    before(async () => {
        ({dataDir, docsDir, server, browser} = await startServedApp(answerModelPath, async (folder: string) => {
            for (const [name, text] of exampleFiles(example))
                await writeFile(path.join(folder, name), text);
        }));
    });

    after(async () => {
        await stopServedApp({browser, server, dataDir, docsDir});
    });

    it("answers a held-out question with the gold answer and cites the gold document", {timeout: 240_000}, async () => {
        const context = await browser!.newContext({viewport: {width: 1100, height: 760}});
        const page = await context.newPage();
        const logs: string[] = [];
        page.on("pageerror", (error) => logs.push(`[page error] ${error.message}`));
        try {
            const chat = new ChatPage(page);
            const app = new AppPage(page);
            const library = new LibraryPage(page);
            await chat.open(server!.url);
            await chat.waitUntilConnected();
            await chat.ensureModelSelected("weft-answers");

            await library.open();
            const run = await library.addFolder(docsDir);
            assert.equal((await library.waitForIngestEnd(run, 120_000)).state, "done");
            assert.equal(await library.files(docsDir), exampleFiles(example).size);
            await page.keyboard.press("Control+l");

            await chat.ask(example.question);
            const {status} = await chat.waitForAnswer(120_000);
            assert.equal(status, "done");
            // The answer as read, without the hidden passage preview that each inline [n] carries.
            const text = await chat.answers.last().evaluate((bubble) => {
                const copy = bubble.cloneNode(true) as typeof bubble;
                copy.querySelectorAll('[role="tooltip"]').forEach((tip: {remove(): void}) => tip.remove());
                return copy.textContent ?? "";
            });
            assert.ok(exactMatch(text, example.answer), `answer ${JSON.stringify(text)}, gold ${JSON.stringify(example.target)}`);
            const cited = citedSources(text)[0];
            assert.ok(cited != null, `the answer cites no source: ${JSON.stringify(text)}`);
            const item = app.sources(chat.turn()).locator(`[data-testid="citation"][data-n="${cited}"]`);
            await item.waitFor();
            assert.equal(path.basename((await item.getAttribute("data-path")) ?? ""), goldFile,
                `[${cited}] in the Sources list is not the gold document ${goldFile}`);
        } catch (error) {
            console.error([...logs, "--- weft serve output ---", server?.output() ?? ""].join("\n"));
            throw error;
        } finally {
            await context.close();
        }
    });
});
