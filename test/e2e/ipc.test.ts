// The renderer inside Electron talks through `window.weft` (the preload's PreloadApi). Here a stand-in
// preload is injected into headless Chromium, and the built renderer is served from dist/ by routing,
// so the IPC transport, its error mapping and the UI are checked without Electron or a model.
import assert from "node:assert/strict";
import {existsSync} from "node:fs";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import type {Browser} from "playwright-core";
import {ChatPage} from "./pages/chat-page.js";
import {launchChromium, repoRoot} from "./support/serve.js";

const rendererDir = path.join(repoRoot, "dist/renderer");
const origin = "http://weft.test";

/** Behaves like main/electron/preload.ts: rpc rejections carry the JSON of {code, message}. */
const fakePreload = `(() => {
    const models = [
        {id: "tiny", name: "Tiny Stories", path: "/models/tiny.gguf", sizeBytes: 1185376, architecture: "llama",
         contextLength: 2048, hasChatTemplate: false, addedAt: "2025-01-01T00:00:00.000Z"},
        {id: "ghost", name: "Ghost", path: "/models/ghost.gguf", sizeBytes: 2048, architecture: "llama",
         contextLength: 2048, hasChatTemplate: false, addedAt: "2025-01-01T00:00:00.000Z"}
    ];
    let active = "tiny";
    const reject = (code, message) => Promise.reject(new Error(JSON.stringify({code, message})));
    const stats = (completionTokens, cancelled) => ({
        backend: "cuda", modelId: active, strategy: "full", promptTokens: 7, reusedTokens: 2, recomputedTokens: 1,
        freshTokens: 4, completionTokens, modelLoadMs: 0, retrievalMs: 1.5, prefillMs: 2, ttftMs: 9, totalMs: 40,
        tokensPerSecond: 100
    });
    window.weft = {
        getStatus: async () => ({version: "0.0.0-test", backend: "cuda", threads: 4, dataDir: "/data",
                                 activeModelId: active, loadedModelId: active}),
        listModels: async () => models,
        addModel: (input) => reject("model_invalid", "not a GGUF file: " + input.path),
        removeModel: async () => ({removed: false}),
        selectModel: (input) => input.id === "ghost"
            ? reject("model_missing", "the file of ghost is gone")
            : (active = input.id, Promise.resolve(models.find((m) => m.id === input.id))),
        chat: (input, onEvent) => {
            if (input.question.includes("fail")) {
                setTimeout(() => onEvent({type: "error", error: {code: "busy", message: "the engine is busy"}}), 10);
                return {cancel() {}};
            }
            const citations = [{n: 1, path: "notes/guide.pdf", page: 4, span: [0, 20], score: 0.9}];
            const words = ["Hello", " from", " the", " preload", "."];
            let i = 0;
            let stopped = false;
            onEvent({type: "retrieval", citations, retrievalMs: 1.5});
            const timer = setInterval(() => {
                if (stopped || i === words.length) {
                    clearInterval(timer);
                    onEvent({type: "done", answer: words.slice(0, i).join(""), citations, stats: stats(i, stopped), cancelled: stopped});
                    return;
                }
                onEvent({type: "token", text: words[i++]});
            }, input.question.includes("slow") ? 300 : 30);
            return {cancel() { stopped = true; }};
        }
    };
})();`;

describe("chat in Electron's renderer (window.weft)", () => {
    let browser: Browser | undefined;

    before(async () => {
        assert.ok(existsSync(path.join(rendererDir, "index.html")), "dist/renderer is missing: run node scripts/build.mjs");
        browser = await launchChromium();
    });

    after(async () => {
        await browser?.close();
    });

    it("uses the preload API: streams, shows stats, citations and engine errors", {timeout: 60_000}, async () => {
        const context = await browser!.newContext({viewport: {width: 1100, height: 760}});
        const logs: string[] = [];
        try {
            await context.route(`${origin}/**`, async (route) => {
                const {pathname} = new URL(route.request().url());
                const file = path.join(rendererDir, pathname === "/" ? "index.html" : pathname);
                if (!file.startsWith(rendererDir) || !existsSync(file))
                    return route.fulfill({status: 404});
                return route.fulfill({path: file});
            });
            const page = await context.newPage();
            page.on("pageerror", (error) => logs.push(`[page error] ${error.message}`));
            page.on("console", (message) => logs.push(`[console.${message.type()}] ${message.text()}`));
            await page.addInitScript({content: fakePreload});
            const chat = new ChatPage(page);

            // No token in the URL, and none needed: the preload is the transport.
            await chat.open(`${origin}/`);
            await chat.waitUntilConnected();
            assert.equal(await page.getByTestId("backend").textContent(), "cuda");
            assert.equal(await chat.modelPicker.inputValue(), "tiny");

            await chat.ask("hello");
            const answer = await chat.waitForAnswer();
            assert.equal(answer.text, "Hello from the preload.");
            assert.equal(await chat.stat("promptTokens"), "7");
            assert.equal(await chat.stat("backend"), "cuda");
            assert.match((await chat.turn().getByTestId("citations").textContent()) ?? "", /\[1\] notes\/guide\.pdf \(page 4\)/);

            // A failed stream shows its message inline, under its question.
            await chat.ask("please fail");
            const failed = await chat.waitForAnswerEnd();
            assert.equal(failed.status, "error");
            assert.match(failed.text, /the engine is busy/);

            // Stop ends a streaming answer; the engine's final event says it was cancelled.
            await chat.ask("a slow one");
            await chat.turn().locator('[data-testid="answer"][data-status="streaming"]').waitFor();
            await chat.stopButton.click();
            const stopped = await chat.waitForAnswer();
            assert.equal(stopped.status, "cancelled");
            assert.ok(stopped.text.length < "Hello from the preload.".length, `stopped early: ${stopped.text}`);
            await chat.turn().getByText("Stopped.").waitFor();
            assert.ok(Number(await chat.stat("completionTokens")) < 5);

            // A rejected rpc: the JSON message of the preload's Error becomes a readable notice,
            // and the picker goes back to the model that is still active.
            await chat.modelPicker.selectOption("ghost");
            await page.getByTestId("notice").waitFor();
            assert.match((await page.getByTestId("notice").textContent()) ?? "", /the file of ghost is gone/);
            assert.doesNotMatch((await page.getByTestId("notice").textContent()) ?? "", /\{/);
            await page.locator('[data-testid="model-picker"]:not([disabled])').waitFor();
            assert.equal(await chat.modelPicker.inputValue(), "tiny");
        } catch (error) {
            console.error(logs.join("\n"));
            throw error;
        } finally {
            await context.close();
        }
    });
});
