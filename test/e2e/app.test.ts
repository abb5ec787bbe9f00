// End to end: the app around the chat, in Chromium against the real `weft serve` with the real tiny model —
// the per-answer strip, sources (hover, open at the page), conversations across reloads and restarts, settings
// and theme, the cache view, and a model download with progress, cancel and resume. Screenshots go to
// test/.tmp/screenshots/app-*.png.
import assert from "node:assert/strict";
import {mkdir, readFile, writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {PDFDocument, StandardFonts} from "pdf-lib";
import type {Browser, BrowserContext, Page} from "playwright-core";
import {AppPage} from "./pages/app-page.js";
import {ChatPage} from "./pages/chat-page.js";
import {LibraryPage} from "./pages/library-page.js";
import {repoRoot, startServe, tinyModelPath, type RunningServer} from "./support/serve.js";
import {startServedApp, stopServedApp} from "./support/served-app.js";
import {startSlowFileServer} from "./support/slow-file-server.js";

const screenshots = path.join(repoRoot, "test/.tmp/screenshots");
const MiB = 1024 ** 2;

async function writeDocuments(folder: string): Promise<void> {
    await writeFile(path.join(folder, "lighthouse.md"), [
        "# Zanzibar lighthouse keepers",
        "",
        "The zanzibar lighthouse keepers climb the spiral stairs every evening to trim the wick of the great lamp.",
        "Each keeper logs passing dhows in a leather ledger."
    ].join("\n"));
    const doc = await PDFDocument.create();
    const font = await doc.embedFont(StandardFonts.Helvetica);
    doc.addPage([420, 420]).drawText("Chapter one is about orchards and pruning.", {x: 30, y: 370, size: 13, font});
    const second = doc.addPage([420, 420]);
    second.drawText("Chapter two: the quokka colony", {x: 30, y: 370, size: 16, font});
    second.drawText("A quokka colony lives on Rottnest island near Perth.", {x: 30, y: 340, size: 12, font});
    await writeFile(path.join(folder, "islands.pdf"), await doc.save());
}

describe("the app around the chat (weft serve)", () => {
    let dataDir = "";
    let docsDir = "";
    let server: RunningServer | undefined;
    let browser: Browser | undefined;

    before(async () => {
        await mkdir(screenshots, {recursive: true});
        ({dataDir, docsDir, server, browser} = await startServedApp(tinyModelPath, writeDocuments));
    });

    after(async () => {
        await stopServedApp({browser, server, dataDir, docsDir});
    });

    const withPage = async (body: (page: Page) => Promise<void>): Promise<void> => {
        const context: BrowserContext = await browser!.newContext({viewport: {width: 1280, height: 820}});
        const page = await context.newPage();
        const logs: string[] = [];
        page.on("pageerror", (error) => logs.push(`[page error] ${error.message}`));
        page.on("console", (message) => logs.push(`[console.${message.type()}] ${message.text()}`));
        try {
            await body(page);
        } catch (error) {
            console.error([...logs, "--- weft serve output ---", server?.output() ?? ""].join("\n"));
            throw error;
        } finally {
            await context.close();
        }
    };

    const shot = async (page: Page, name: string) => {
        const file = path.join(screenshots, `app-${name}.png`);
        await page.screenshot({path: file});
        console.log(`screenshot: ${file}`);
    };

    it("answers with a compact strip, sources that preview on hover and open at their page", {timeout: 240_000}, async () => {
        await withPage(async (page) => {
            const chat = new ChatPage(page);
            const app = new AppPage(page);
            const library = new LibraryPage(page);
            await chat.open(server!.url);
            await chat.waitUntilConnected();
            await chat.ensureModelSelected();
            await page.getByRole("heading", {name: "Conversations"}).waitFor();

            await library.open();
            const run = await library.addFolder(docsDir);
            assert.equal((await library.waitForIngestEnd(run, 120_000)).state, "done");
            await page.keyboard.press("Control+l");

            await chat.ask("zanzibar lighthouse keepers");
            assert.equal((await chat.waitForAnswer(120_000)).status, "done");
            const turn = chat.turn();
            const strip = app.strip(turn);
            await strip.waitFor();
            const stripText = (await strip.textContent()) ?? "";
            assert.match(stripText, /First token \d/);
            assert.match(stripText, /\d+ reused · \d+ recomputed · \d+ fresh/);
            assert.match(stripText, /prefix|full|naive|hkvd|chunk-head/);
            await shot(page, "strip");

            // The strip opens into the full breakdown.
            await app.openDetails(turn);
            assert.ok(Number(await chat.stat("promptTokens")) > 0);
            await shot(page, "strip-details");

            // [1] in the sources shows its passage on hover.
            const tip = await app.hoverCitation(turn, 1);
            assert.match((await tip.textContent()) ?? "", /lighthouse|quokka|orchards/i);
            await shot(page, "citation-hover");

            // Open shows the Markdown file as text with the cited passage marked.
            const dialog = await app.openSource(turn, "lighthouse.md");
            const marked = dialog.getByLabel("Cited passage");
            await marked.waitFor();
            assert.match((await marked.textContent()) ?? "", /zanzibar lighthouse keepers/i);
            await shot(page, "open-text");
            await page.keyboard.press("Escape");
            await dialog.waitFor({state: "detached"});

            // The PDF opens at the cited page, drawn by pdf.js.
            await chat.ask("quokka colony Rottnest island");
            assert.equal((await chat.waitForAnswer(120_000)).status, "done");
            const pdfTurn = chat.turn();
            const pdfCitation = app.sources(pdfTurn).getByRole("button", {name: "Open islands.pdf (p. 2)"});
            await pdfCitation.waitFor();
            const pdfDialog = await app.openSource(pdfTurn, "islands.pdf");
            await pdfDialog.getByRole("img", {name: "Page 2"}).waitFor();
            await pdfDialog.locator('.pdf-view[data-page="2"]').waitFor({timeout: 30_000});
            assert.match((await pdfDialog.getByText(/^Page 2 of 2$/).textContent()) ?? "", /Page 2 of 2/);
            await shot(page, "open-pdf");
            await pdfDialog.getByRole("button", {name: "Previous page"}).click();
            await pdfDialog.locator('.pdf-view[data-page="1"]').waitFor({timeout: 30_000});
            await pdfDialog.getByRole("button", {name: "Close the document"}).click();

            // A file outside the library is refused by the engine, not shown.
            assert.equal(await page.getByRole("dialog").count(), 0);
        });
    });

    it("keeps conversations across reloads and restarts; renames, Ctrl+K and delete", {timeout: 240_000}, async () => {
        await withPage(async (page) => {
            const chat = new ChatPage(page);
            const app = new AppPage(page);
            await chat.open(server!.url);
            await chat.waitUntilConnected();
            await app.conversation("zanzibar lighthouse keepers").waitFor();
            await app.conversation("zanzibar lighthouse keepers").click();
            await page.getByTestId("turn").nth(1).waitFor();

            // A reload comes back to the same conversation, answers with their strips and sources.
            await page.reload();
            await chat.waitUntilConnected();
            await page.getByTestId("turn").nth(1).waitFor();
            assert.equal(await app.currentConversation().textContent(), "zanzibar lighthouse keepers");
            assert.equal(await page.getByRole("region", {name: "Answer summary"}).count(), 2);
            assert.ok(await page.getByRole("list", {name: "Sources"}).count() >= 1);
            await shot(page, "conversation-reloaded");

            await app.rename("zanzibar lighthouse keepers", "Islands and lighthouses");

            // Shift+Enter adds a line instead of sending.
            const question = page.getByRole("textbox", {name: "Question"});
            await question.fill("first line");
            await question.press("Shift+Enter");
            await question.pressSequentially("second line");
            assert.equal(await question.inputValue(), "first line\nsecond line");
            assert.equal(await page.getByTestId("turn").count(), 2, "Shift+Enter must not send");
            await question.fill("");

            // Ctrl+K starts a new chat; its first answer saves it as a second conversation, on top.
            await page.keyboard.press("Control+k");
            await page.getByRole("heading", {name: "Ask your documents"}).waitFor();
            await chat.ask("Once upon a time");
            assert.equal((await chat.waitForAnswer(120_000)).status, "done");
            await app.conversation("Once upon a time").waitFor();
            assert.deepEqual(await app.conversationTitles(), ["Once upon a time", "Islands and lighthouses"]);
            await shot(page, "conversations");

            await app.remove("Once upon a time");
            assert.deepEqual(await app.conversationTitles(), ["Islands and lighthouses"]);
        });

        // A restart of the engine (same data folder) still has the conversation and its answers.
        await server!.stop();
        server = await startServe(dataDir);
        await withPage(async (page) => {
            const chat = new ChatPage(page);
            const app = new AppPage(page);
            await chat.open(server!.url);
            await chat.waitUntilConnected();
            await app.conversation("Islands and lighthouses").click();
            await page.getByTestId("turn").nth(1).waitFor();
            assert.equal(await page.getByRole("region", {name: "Answer summary"}).count(), 2);
        });
    });

    it("changes the theme and settings, kept by the engine", {timeout: 120_000}, async () => {
        await withPage(async (page) => {
            const chat = new ChatPage(page);
            const app = new AppPage(page);
            await chat.open(server!.url);
            await chat.waitUntilConnected();
            await app.openView("Settings");
            await shot(page, "settings-system");
            await page.getByRole("combobox", {name: "Theme"}).selectOption("light");
            await page.locator('html[data-theme="light"]').waitFor();
            await app.setNumber("Threads", "2");
            await page.getByText("(after restart)").first().waitFor();
            await page.getByRole("combobox", {name: "KV strategy"}).selectOption("naive");
            await page.getByText("Changes are saved at once.").waitFor();
            await shot(page, "settings-light");

            await page.reload();
            await chat.waitUntilConnected();
            await page.locator('html[data-theme="light"]').waitFor();
            await app.openView("Settings");
            assert.equal(await page.getByRole("spinbutton", {name: /^Threads/}).inputValue(), "2");
            assert.equal(await page.getByRole("combobox", {name: "KV strategy"}).inputValue(), "naive");
            await app.openView("Chat");
            assert.equal(await page.getByTestId("strategy-picker").inputValue(), "naive", "the composer follows the saved strategy");
            await shot(page, "chat-light");
            await app.openView("Settings");
            await page.getByRole("combobox", {name: "Theme"}).selectOption("dark");
            await page.getByRole("combobox", {name: "KV strategy"}).selectOption("auto");
            await page.locator('html[data-theme="dark"]').waitFor();
            await shot(page, "settings-dark");
        });
    });

    it("shows the caches per tier and the first-token chart", {timeout: 120_000}, async () => {
        await withPage(async (page) => {
            const chat = new ChatPage(page);
            const app = new AppPage(page);
            await chat.open(server!.url);
            await chat.waitUntilConnected();
            await app.conversation("Islands and lighthouses").click();
            await page.getByTestId("turn").nth(1).waitFor();
            await app.openView("Cache");
            const tiers = page.getByRole("table", {name: "Cache tiers"});
            await tiers.waitFor();
            for (const tier of ["GPU-resident", "RAM", "Disk"])
                await tiers.getByRole("rowheader", {name: tier}).waitFor();
            await page.getByRole("img", {name: "Time to first token of 2 answers"}).waitFor();
            await shot(page, "cache");
        });
    });

    it("downloads a model from a local server with progress, cancel and resume", {timeout: 240_000}, async () => {
        // 12 MiB: the downloader keeps progress in 5 MiB chunks, so cancelling past the first one leaves it on disk.
        const model = await readFile(tinyModelPath);
        const data = Buffer.concat([model, Buffer.alloc(12 * MiB - model.byteLength)]);
        const files = await startSlowFileServer(data, "tiny-stories.gguf", {fastBytes: 6 * MiB, slowBytesPerTick: 16 * 1024, tickMs: 50});
        const name = "tiny-stories.gguf";
        try {
            await withPage(async (page) => {
                const chat = new ChatPage(page);
                const app = new AppPage(page);
                await chat.open(server!.url);
                await chat.waitUntilConnected();
                await app.openView("Models");
                await page.getByLabel("Backend").getByText("CPU").waitFor({timeout: 60_000});
                await app.localModel("stories").first().waitFor();
                // Quantization from the file's tensors (stories260K has no general.file_type) and the context length.
                await app.localModel("stories260K").getByRole("cell", {name: "F32", exact: true}).waitFor();
                await app.localModel("stories260K").getByRole("cell", {name: "2,048", exact: true}).waitFor();
                await shot(page, "models");

                await app.downloadInput.fill(files.url);
                await app.downloadInput.press("Enter");
                await app.downloadProgress(name).waitFor();
                // Progress moves: readings grow past the first chunk while the rest comes slowly.
                const readings: number[] = [];
                for (let i = 0; i < 600 && (readings.at(-1) ?? 0) < 5.5 * MiB; i++) {
                    const bytes = await app.downloadedBytes(name);
                    if (bytes !== readings.at(-1))
                        readings.push(bytes);
                    await page.waitForTimeout(100);
                }
                assert.ok(readings.length >= 2 && readings.at(-1)! > 5.5 * MiB, `progress should move: ${JSON.stringify(readings)}`);
                await shot(page, "download-progress");

                await page.getByRole("button", {name: `Cancel downloading ${name}`}).click();
                await page.getByText(/Cancelled at/).waitFor({timeout: 30_000});
                await shot(page, "download-cancelled");
                const beforeResume = files.requests.length;

                files.unthrottle();
                await page.getByRole("button", {name: `Resume downloading ${name}`}).click();
                await page.getByText(/^Done:/).waitFor({timeout: 120_000});
                await app.localModel("tiny-stories").first().waitFor();
                const resumed = files.requests.slice(beforeResume).filter((request) => request.ranged);
                assert.ok(resumed.length > 0 && resumed.every((request) => request.start >= 5 * MiB),
                    `the resume should not fetch the first chunk again: ${JSON.stringify(files.requests)}`);
                await shot(page, "download-done");
            });
        } finally {
            await files.close();
        }
    });
});
