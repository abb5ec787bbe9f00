// The renderer inside Electron talks through `window.weft` (the preload's PreloadApi). Here a stand-in
// preload is injected into headless Chromium, and the built renderer is served from dist/ by routing,
// so the IPC transport, its error mapping and the UI are checked without Electron or a model.
import assert from "node:assert/strict";
import {existsSync} from "node:fs";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import type {Browser, Page} from "playwright-core";
import {ChatPage} from "./pages/chat-page.js";
import {LibraryPage} from "./pages/library-page.js";
import {launchChromium, repoRoot} from "./support/serve.js";

const rendererDir = path.join(repoRoot, "dist/renderer");
const origin = "http://weft.test";

/** Behaves like main/electron/preload.ts: rpc rejections carry the JSON of {code, message}. */
const fakePreload = `(() => {
    const models = [
        {id: "tiny", name: "Tiny Stories", path: "/models/tiny.gguf", sizeBytes: 1185376, architecture: "llama",
         contextLength: 2048, hasChatTemplate: false, addedAt: "2025-01-01T00:00:00.000Z", blend: {canBlend: true, reason: null}},
        {id: "ghost", name: "Ghost", path: "/models/ghost.gguf", sizeBytes: 2048, architecture: "gemma3",
         contextLength: 2048, hasChatTemplate: false, addedAt: "2025-01-01T00:00:00.000Z",
         blend: {canBlend: false, reason: 'model "Ghost" (gemma3) cannot blend: sliding-window attention layers'}}
    ];
    let active = "tiny";
    let folders = [
        {id: "f1", path: "/docs/handbook", addedAt: "2025-01-01T00:00:00.000Z", lastIndexedAt: "2025-01-02T00:00:00.000Z",
         files: 12, chunks: 140, skipped: [{path: "/docs/handbook/logo.png", reason: "unsupported type .png"}],
         errors: [{path: "/docs/handbook/old/scan.pdf", reason: "corrupt PDF: Invalid PDF structure."}]}
    ];
    const reject = (code, message) => Promise.reject(new Error(JSON.stringify({code, message})));
    // Background KV cache warming: a pass of one chunk every 40 ms starts when an ingest finishes.
    let warm = {state: "idle", modelId: null, done: 0, total: 0, computed: 0, failed: 0};
    let warmPaused = false;
    let warmTimer = null;
    const warmListeners = new Set();
    const setWarm = (patch) => {
        warm = {...warm, ...patch};
        warmListeners.forEach((listener) => listener({type: "status", status: warm}));
    };
    const startWarm = (total) => {
        clearInterval(warmTimer);
        setWarm({state: warmPaused ? "paused" : "running", modelId: active, done: 0, total, computed: 0, failed: 0});
        warmTimer = setInterval(() => {
            if (warmPaused)
                return;
            if (warm.done === warm.total) {
                clearInterval(warmTimer);
                return setWarm({state: "idle"});
            }
            setWarm({done: warm.done + 1, computed: warm.computed + 1});
        }, 40);
    };
    const stats = (completionTokens, cancelled) => ({
        backend: "cuda", modelId: active, strategy: "full", promptTokens: 7, reusedTokens: 2, recomputedTokens: 1,
        freshTokens: 4, completionTokens, modelLoadMs: 0, retrievalMs: 1.5, prefillMs: 2, ttftMs: 9, totalMs: 40,
        tokensPerSecond: 100,
        // Fields newer contracts require (older ones strip them).
        ratio: 0, kvBytesLoaded: 0, kvLoadMs: 0, kvLoadGBps: 0, kvResidentBytes: 0, kvResidentMs: 0, selectMs: 0, recomputeMs: 0,
        fullPrefillEstimateMs: 0
    });
    window.weft = {
        getStatus: async () => ({version: "0.0.0-test", backend: "cuda", threads: 4, dataDir: "/data",
                                 activeModelId: active, embeddingModelId: null, loadedModelId: active, cacheWarm: warm}),
        listModels: async () => models,
        addModel: (input) => reject("model_invalid", "not a GGUF file: " + input.path),
        removeModel: async () => ({removed: false}),
        selectModel: (input) => input.id === "ghost"
            ? reject("model_missing", "the file of ghost is gone")
            : (active = input.id, Promise.resolve(models.find((m) => m.id === input.id))),
        listFolders: async () => folders,
        removeFolder: async (input) => {
            const before = folders.length;
            folders = folders.filter((folder) => folder.id !== input.id);
            return {removed: folders.length < before};
        },
        // "/missing" fails; anything else indexes 20 files, one every 120 ms, until done or cancelled.
        ingestFolder: (input, onEvent) => {
            if (input.path === "/missing") {
                setTimeout(() => onEvent({type: "error", error: {code: "not_found", message: "cannot open folder /missing: ENOENT"}}), 20);
                return {cancel() {}};
            }
            const total = 20;
            let done = 0;
            let stopped = false;
            const summary = () => ({folder: input.path, files: done, chunks: done * 3, changedFiles: done, removedFiles: 0,
                                    skipped: [], errors: [], bytes: done * 150000, elapsedMs: done * 120, tokenizer: "model"});
            const finish = (cancelled) => {
                clearInterval(timer);
                folders = [...folders.filter((folder) => folder.path !== input.path), {
                    id: "f-" + input.path, path: input.path, addedAt: new Date().toISOString(), lastIndexedAt: cancelled ? null : new Date().toISOString(),
                    files: done, chunks: done * 3, skipped: [], errors: []
                }];
                onEvent({type: "done", summary: summary(), cancelled});
                if (!cancelled)
                    startWarm(done * 3);
            };
            const timer = setInterval(() => {
                if (stopped)
                    return finish(true);
                if (done === total)
                    return finish(false);
                done++;
                onEvent({type: "progress", progress: {filesDone: done, filesTotal: total, chunks: done * 3, bytes: done * 150000,
                    filesPerSecond: 8.3, bytesPerSecond: 1250000, currentPath: input.path + "/chapter-" + done + ".md"}});
            }, 120);
            onEvent({type: "progress", progress: {filesDone: 0, filesTotal: total, chunks: 0, bytes: 0, filesPerSecond: 0,
                bytesPerSecond: 0, currentPath: null}});
            return {cancel() { stopped = true; }};
        },
        pauseCacheWarm: async () => {
            warmPaused = true;
            if (warm.state !== "unavailable")
                setWarm({state: "paused"});
            return warm;
        },
        resumeCacheWarm: async () => {
            warmPaused = false;
            if (warm.state === "paused")
                setWarm({state: warm.done < warm.total ? "running" : "idle"});
            return warm;
        },
        watchCacheWarm: (input, onEvent) => {
            warmListeners.add(onEvent);
            setTimeout(() => onEvent({type: "status", status: warm}), 0);
            return {cancel() {
                if (warmListeners.delete(onEvent))
                    onEvent({type: "done"});
            }};
        },
        chat: (input, onEvent) => {
            if (input.question.includes("fail")) {
                setTimeout(() => onEvent({type: "error", error: {code: "busy", message: "the engine is busy"}}), 10);
                return {cancel() {}};
            }
            const citations = [
                {n: 1, path: "/docs/notes/guide.pdf", page: 4, span: [0, 20], score: 0.9, text: "Chapter four of the guide."},
                {n: 2, path: "/docs/notes/todo.md", page: null, span: [0, 8], score: 0.5}
            ];
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

    /** A fresh context serving dist/renderer with the stand-in preload; the page's console is printed only if `body` fails. */
    const withPage = async (body: (page: Page) => Promise<void>): Promise<void> => {
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
            await body(page);
        } catch (error) {
            console.error(logs.join("\n"));
            throw error;
        } finally {
            await context.close();
        }
    };

    it("uses the preload API: streams, shows stats, citations and engine errors", {timeout: 60_000}, async () => {
        await withPage(async (page) => {
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
            // Citations: "[n] file name (p. N)", the full path as tooltip, the passage behind a click.
            const citations = chat.turn().getByTestId("citation");
            assert.equal(await citations.count(), 2);
            assert.equal(((await citations.nth(0).locator(".citation-line").textContent()) ?? "").trim(), "[1] guide.pdf (p. 4)");
            assert.equal(await citations.nth(0).locator(".citation-path").getAttribute("title"), "/docs/notes/guide.pdf");
            assert.equal(await citations.nth(0).getByTestId("citation-text").isVisible(), false, "the passage starts folded");
            await citations.nth(0).locator("summary").click();
            assert.equal(await citations.nth(0).getByTestId("citation-text").textContent(), "Chapter four of the guide.");
            assert.equal(((await citations.nth(1).textContent()) ?? "").trim(), "[2] todo.md", "no page, no passage: a plain line");
            assert.equal(await citations.nth(1).locator("summary").count(), 0);

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

            // A model that cannot blend says so in the picker, and why in the option's tooltip.
            const ghost = chat.modelPicker.locator('option[value="ghost"]');
            assert.match((await ghost.textContent()) ?? "", /prefix only/);
            assert.match((await ghost.getAttribute("title")) ?? "", /cannot blend: sliding-window/);
            assert.doesNotMatch((await chat.modelPicker.locator('option[value="tiny"]').textContent()) ?? "", /prefix only/);

            // A rejected rpc: the JSON message of the preload's Error becomes a readable notice,
            // and the picker goes back to the model that is still active.
            await chat.modelPicker.selectOption("ghost");
            await page.getByTestId("notice").waitFor();
            assert.match((await page.getByTestId("notice").textContent()) ?? "", /the file of ghost is gone/);
            assert.doesNotMatch((await page.getByTestId("notice").textContent()) ?? "", /\{/);
            await page.locator('[data-testid="model-picker"]:not([disabled])').waitFor();
            assert.equal(await chat.modelPicker.inputValue(), "tiny");
        });
    });

    it("runs the library over the preload: progress, cancel, inline errors, remove after confirming", {timeout: 60_000}, async () => {
        await withPage(async (page) => {
            const chat = new ChatPage(page);
            const library = new LibraryPage(page);
            await chat.open(`${origin}/`);
            await chat.waitUntilConnected();

            // Folders are loaded on connect: the header counts them before the panel opens.
            await page.locator('[data-testid="library-toggle"] .count').getByText("1").waitFor();
            await library.open();
            const handbook = library.row("/docs/handbook");
            await handbook.waitFor();
            assert.equal(await library.files("/docs/handbook"), 12);
            assert.match((await handbook.textContent()) ?? "", /12 files · 140 chunks · indexed/);
            const errors = await library.problems("/docs/handbook", "errors");
            assert.deepEqual(errors.map((entry) => entry.path), ["/docs/handbook/old/scan.pdf"]);
            assert.match(errors[0]!.text, /old\/scan\.pdf.*corrupt PDF/, "shown relative to the folder, with its reason");
            const skipped = await library.problems("/docs/handbook", "skipped");
            assert.match(skipped[0]!.text, /logo\.png.*unsupported type \.png/);

            // A running ingest shows files done/total, chunks, MB/s and the current file; Add waits for it.
            const firstRun = await library.addFolder("/docs/slow-archive");
            await page.locator('[data-testid="ingest-current"]').getByText(/^chapter-[2-9]\.md$/).waitFor();
            assert.equal(await library.progress.getAttribute("data-state"), "running");
            assert.match((await library.progress.textContent()) ?? "", /Indexing slow-archive/);
            assert.match((await library.progress.textContent()) ?? "", /\d+ \/ 20 files · \d+ chunks · 1\.3 MB\/s/);
            assert.equal(await library.progress.getByRole("progressbar").getAttribute("aria-valuemax"), "20");
            assert.equal(await page.getByTestId("ingest-current").getAttribute("title"),
                `/docs/slow-archive/${(await page.getByTestId("ingest-current").textContent()) ?? ""}`);
            await library.pathInput.fill("/docs/other");
            assert.equal(await library.addButton.isDisabled(), true, "one folder indexes at a time");
            assert.equal(await library.row("/docs/handbook").getByTestId("reindex-folder").isDisabled(), true);
            await page.screenshot({path: path.join(repoRoot, "test/.tmp/screenshots/library-progress.png")});

            await library.cancelButton.click();
            const cancelled = await library.waitForIngestEnd(firstRun);
            assert.equal(cancelled.state, "cancelled");
            assert.match(cancelled.text, /was cancelled; \d+ files? indexed so far/);
            await library.row("/docs/slow-archive").waitFor();
            assert.ok(await library.files("/docs/slow-archive") < 20, "cancelled before the end");

            // A stream error stays in the panel, not in the banner.
            const secondRun = await library.addFolder("/missing");
            const failed = await library.waitForIngestEnd(secondRun);
            assert.equal(failed.state, "error");
            assert.equal(await library.ingestError.getAttribute("data-code"), "not_found");
            assert.match((await library.ingestError.textContent()) ?? "", /cannot open folder \/missing: ENOENT/);
            assert.equal(await page.getByTestId("notice").count(), 0);

            // Remove asks first; Escape (like Keep) answers no, and does not close the panel.
            await handbook.getByTestId("remove-folder").click();
            await handbook.getByTestId("keep-folder").waitFor();
            await page.keyboard.press("Escape");
            await handbook.getByTestId("keep-folder").waitFor({state: "detached"});
            assert.equal(await library.isOpen(), true);
            await library.remove("/docs/handbook");
            assert.equal(await library.folderRows.count(), 1);

            // Escape in the panel closes it; Ctrl+L brings it back.
            await library.pathInput.press("Escape");
            await library.panel.waitFor({state: "detached"});
            await library.pressShortcut();
            await library.panel.waitFor();
            assert.equal(await library.folderRows.count(), 1);
        });
    });

    it("shows the KV caches being prepared after an ingest, with pause and resume", {timeout: 60_000}, async () => {
        await withPage(async (page) => {
            const chat = new ChatPage(page);
            const library = new LibraryPage(page);
            await chat.open(`${origin}/`);
            await chat.waitUntilConnected();
            await library.open();
            assert.equal(await library.cacheWarm.count(), 0, "nothing to show while no caches are being prepared");

            const run = await library.addFolder("/docs/papers");
            assert.equal((await library.waitForIngestEnd(run)).state, "done");
            await library.cacheWarmIn("running").waitFor();
            assert.match((await library.cacheWarm.textContent()) ?? "", /Preparing KV caches: \d+\/60/);
            assert.equal(await library.cacheWarm.getByRole("progressbar").getAttribute("aria-valuemax"), "60");
            assert.equal(await library.cacheWarmToggle.textContent(), "Pause");
            await page.screenshot({path: path.join(repoRoot, "test/.tmp/screenshots/library-cache-warm.png")});

            await library.cacheWarmToggle.click();
            await library.cacheWarmIn("paused").waitFor();
            assert.equal(await library.cacheWarmToggle.textContent(), "Resume");
            assert.match((await library.cacheWarm.textContent()) ?? "", /paused/);
            const doneWhenPaused = Number(await library.cacheWarm.getAttribute("data-done"));
            assert.ok(doneWhenPaused < 60, `${doneWhenPaused} of 60 when paused`);
            await page.waitForTimeout(300);
            assert.equal(Number(await library.cacheWarm.getAttribute("data-done")), doneWhenPaused, "no progress while paused");

            await library.cacheWarmToggle.click();
            await library.cacheWarmIn("running").waitFor();
            // Finished: the section goes away.
            await library.cacheWarm.waitFor({state: "detached"});
        });
    });
});
