// End to end: the real `weft serve` with the real tiny model, driven through headless Chromium.
import assert from "node:assert/strict";
import {mkdir, mkdtemp, rm} from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import type {Browser, BrowserContext} from "playwright-core";
import {ChatPage} from "./pages/chat-page.js";
import {launchChromium, registerModel, repoRoot, startServe, tinyModelPath, type RunningServer} from "./support/serve.js";

const screenshotPath = path.join(repoRoot, "test/.tmp/screenshots/chat.png");

describe("chat in the browser (weft serve)", () => {
    let dataDir = "";
    let server: RunningServer | undefined;
    let browser: Browser | undefined;

    before(async () => {
        dataDir = await mkdtemp(path.join(os.tmpdir(), "weft-e2e-"));
        await registerModel(dataDir, tinyModelPath);
        server = await startServe(dataDir);
        browser = await launchChromium();
    });

    after(async () => {
        await browser?.close();
        await server?.stop();
        if (dataDir !== "")
            await rm(dataDir, {recursive: true, force: true});
    });

    /** A fresh browser context (no sessionStorage) and page; the page's console is printed only if `body` fails. */
    const withPage = async (body: (chat: ChatPage) => Promise<void>): Promise<void> => {
        const context: BrowserContext = await browser!.newContext({viewport: {width: 1100, height: 760}});
        const page = await context.newPage();
        const logs: string[] = [];
        page.on("pageerror", (error) => logs.push(`[page error] ${error.message}`));
        page.on("console", (message) => logs.push(`[console.${message.type()}] ${message.text()}`));
        try {
            await body(new ChatPage(page));
        } catch (error) {
            console.error([...logs, "--- weft serve output ---", server?.output() ?? ""].join("\n"));
            throw error;
        } finally {
            await context.close();
        }
    };

    it("streams an answer token by token and shows its stats", {timeout: 120_000}, async () => {
        await withPage(async (chat) => {
            await chat.open(server!.url, {recordAnswers: true});
            await chat.waitUntilConnected();
            assert.ok(!chat.page.url().includes("token="), `the token should leave the visible URL: ${chat.page.url()}`);
            await chat.ensureModelSelected();

            await chat.ask("Once upon a time");
            const {status, text} = await chat.waitForAnswer();
            assert.equal(status, "done");
            assert.ok(text.trim().length > 0, "the finished answer is empty");

            // Tokens stream: the bubble showed at least two different non-empty texts before it was done,
            // each one extending the one before.
            const recorded = await chat.recordedAnswers();
            const partials = recorded
                .filter((entry) => (entry.status === "waiting" || entry.status === "streaming") && entry.text !== "")
                .map((entry) => entry.text);
            const distinct = [...new Set(partials)];
            console.log(`observed ${distinct.length} growing partial answers before done`);
            assert.ok(distinct.length >= 2, `expected the answer to grow while streaming, saw ${JSON.stringify(recorded)}`);
            for (let i = 1; i < distinct.length; i++)
                assert.ok(distinct[i]!.startsWith(distinct[i - 1]!) && distinct[i]!.length > distinct[i - 1]!.length,
                    `partial answers should only grow: ${JSON.stringify(distinct[i - 1])} then ${JSON.stringify(distinct[i])}`);

            await chat.showStats();
            const promptTokens = Number(await chat.stat("promptTokens"));
            assert.ok(Number.isInteger(promptTokens) && promptTokens > 0, `promptTokens should be positive, got ${promptTokens}`);
            const ttftMs = Number(await chat.stat("ttftMs"));
            assert.ok(Number.isFinite(ttftMs) && ttftMs >= 0, `ttftMs should be a number, got ${ttftMs}`);
            const completionTokens = Number(await chat.stat("completionTokens"));
            assert.ok(completionTokens > 0, `completionTokens should be positive, got ${completionTokens}`);
            for (const key of ["totalMs", "tokensPerSecond", "backend", "strategy", "reusedTokens", "recomputedTokens", "freshTokens"])
                assert.notEqual(await chat.stat(key), null, `the stats panel has no ${key}`);

            // The box is ready for the next question.
            assert.equal(await chat.questionInput.inputValue(), "");

            await mkdir(path.dirname(screenshotPath), {recursive: true});
            await chat.page.screenshot({path: screenshotPath});
            console.log(`screenshot: ${screenshotPath}`);

            // A reload keeps working: the token is kept for this tab.
            await chat.page.reload();
            await chat.waitUntilConnected();
        });
    });

    it("stops the streaming answer on Escape", {timeout: 120_000}, async () => {
        await withPage(async (chat) => {
            await chat.open(server!.url);
            await chat.waitUntilConnected();
            await chat.ensureModelSelected();

            // The tiny model writes its 256 tokens in well under a second, so Escape follows Enter at once
            // (a cancel that reaches the engine before or during generation must both end the answer;
            // Stop in the middle of a stream is covered in ipc.test.ts, where the stream is slow on purpose).
            await chat.askAndPressEscape("Once upon a time");
            const {status} = await chat.waitForAnswerEnd();
            assert.equal(status, "cancelled", "Escape should cancel the answer before its 256 tokens are done");
            await chat.turn().getByText("Stopped.").waitFor();
            if (await chat.stats().count() > 0) {
                const completionTokens = Number(await chat.stat("completionTokens"));
                assert.ok(completionTokens < 256, `a cancelled answer stops early, got ${completionTokens} tokens`);
            }
            assert.equal(await chat.sendButton.count(), 1, "the Stop button turns back into Send");

            // And the next question goes through.
            await chat.ask("The little dog");
            assert.equal((await chat.waitForAnswer()).status, "done");
            assert.equal(await chat.answers.count(), 2);
        });
    });

    it("says the page is not authorized when opened without the token", {timeout: 60_000}, async () => {
        await withPage(async (chat) => {
            await chat.open(`${server!.origin}/`);
            await chat.notAuthorized.waitFor({timeout: 15_000});
            const message = (await chat.notAuthorized.textContent()) ?? "";
            assert.match(message, /not authorized/i);
            assert.match(message, /weft serve/);
            assert.equal(await chat.questionInput.count(), 0, "no chat without a token");
        });
    });

    it("says the page is not authorized when its token is wrong", {timeout: 60_000}, async () => {
        await withPage(async (chat) => {
            await chat.open(`${server!.origin}/#token=${"0".repeat(48)}`);
            await chat.notAuthorized.waitFor({timeout: 15_000});
            assert.match((await chat.notAuthorized.textContent()) ?? "", /not authorized/i);
        });
    });
});
