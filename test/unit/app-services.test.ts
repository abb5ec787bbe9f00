// The app's engine services without a model: conversations, settings, the cache overview and the document viewer's
// file access, through the real Engine and (for validation on the wire) the real serve socket.
import assert from "node:assert/strict";
import {mkdir, readdir, readFile, realpath, symlink, writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {apiSocketPath, type StoredTurn} from "../../main/contract/index.js";
import {ConversationStore, titleFrom} from "../../main/engine/conversations.js";
import {Engine} from "../../main/engine/engine.js";
import {type RunningServer, startServer} from "../../main/serve/server.js";

import {makeTempDir} from "../helpers/paths.js";
import {TestSocket} from "../helpers/socket.js";

const turn = (question: string): StoredTurn => ({
    question, answer: "An answer [1].", status: "done", askedAt: new Date().toISOString(), stats: null, error: null,
    citations: [{n: 1, path: "/docs/a.md", page: 3, span: [0, 10], score: 1.5, text: "the chunk"}]
});

describe("conversation store", () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    before(async () => {
        temp = await makeTempDir();
    });
    after(() => temp.cleanup());

    it("keeps conversations across a restart, titled by their first question until renamed", async () => {
        const store = new ConversationStore(temp.dir);
        const first = await store.create();
        assert.equal(first.title, "New chat");
        await store.appendTurn(first.id, turn("Why is the sky blue?"));
        await store.appendTurn(first.id, turn("And the sea?"));
        const second = await store.create("Manuals");
        await store.appendTurn(second.id, turn("How do I mount a disk?"));

        // A new store over the same folder is what the next run of the app sees.
        const reopened = new ConversationStore(temp.dir);
        const list = await reopened.list();
        assert.deepEqual(list.map((c) => [c.title, c.turnCount]), [["Manuals", 1], ["Why is the sky blue?", 2]]);
        const loaded = await reopened.get(first.id);
        assert.deepEqual(loaded.turns.map((t) => t.question), ["Why is the sky blue?", "And the sea?"]);
        assert.deepEqual(loaded.turns[0]!.citations, turn("x").citations);

        await reopened.rename(first.id, "Colours");
        await reopened.appendTurn(first.id, turn("And grass?"));
        assert.equal((await reopened.get(first.id)).title, "Colours");

        assert.deepEqual(await reopened.remove(second.id), {removed: true});
        assert.deepEqual(await reopened.remove(second.id), {removed: false});
        await assert.rejects(reopened.get(second.id), /no conversation/);
        assert.equal((await reopened.list()).length, 1);
    });

    it("appends concurrent turns one after another", async () => {
        const store = new ConversationStore(temp.dir);
        const {id} = await store.create();
        await Promise.all(Array.from({length: 8}, (_, i) => store.appendTurn(id, turn(`question ${i}`))));
        assert.equal((await store.get(id)).turns.length, 8);
    });

    it("sets a damaged file aside and lists the others", async () => {
        const store = new ConversationStore(temp.dir);
        const {id} = await store.create("Fine");
        await writeFile(path.join(temp.dir, "conversations", "broken.json"), "{\"id\": \"broken\", \"turns\": [");
        const titles = (await store.list()).map((c) => c.title);
        assert.ok(titles.includes("Fine"));
        assert.ok((await readdir(path.join(temp.dir, "conversations"))).some((name) => name.startsWith("broken.json.corrupt-")));
        assert.equal((await store.get(id)).title, "Fine");
    });

    it("cuts long titles at a word", () => {
        const title = titleFrom(`${"word ".repeat(30)}end`);
        assert.ok(title.length <= 61 && title.endsWith("…") && !title.includes("  "), title);
    });
});

describe("app endpoints on the engine and the serve socket (no model)", () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let engine: Engine;
    let server: RunningServer;
    let socket: TestSocket;
    let docs: string;

    before(async () => {
        temp = await makeTempDir();
        docs = path.join(temp.dir, "docs");
        await mkdir(docs);
        await writeFile(path.join(docs, "guide.md"), "# Guide\n\nMount the disk with the mount command.\n");
        await writeFile(path.join(temp.dir, "secret.txt"), "outside every folder");
        await symlink(path.join(temp.dir, "secret.txt"), path.join(docs, "escape.txt"));
        const rendererDir = path.join(temp.dir, "renderer");
        await mkdir(rendererDir);
        engine = await Engine.open({dataDir: path.join(temp.dir, "data"), threads: 1, gpu: false});
        for await (const _event of engine.ingestFolder({path: docs}, new AbortController().signal));
        server = await startServer({engine, rendererDir, port: 0});
        socket = await TestSocket.connect(`ws://127.0.0.1:${server.port}${apiSocketPath}?token=${server.token}`);
    });

    after(async () => {
        socket.close();
        await server.close();
        await engine.close();
        await temp.cleanup();
    });

    it("creates, lists and renames conversations over the socket, and refuses bad input", async () => {
        const created = await socket.call(1, "createConversation", {});
        assert.equal(created.type, "result");
        const id = (created as {output: {id: string}}).output.id;
        const appended = await socket.call(2, "appendTurn", {id, turn: turn("What is Weft?")});
        assert.equal(appended.type, "result", JSON.stringify(appended));
        assert.equal((appended as {output: {title: string}}).output.title, "What is Weft?");
        const bad = await socket.call(3, "renameConversation", {id, title: "   "});
        assert.equal(bad.type, "failure");
        assert.equal((bad as {error: {code: string}}).error.code, "bad_request");
        const badTurn = await socket.call(4, "appendTurn", {id, turn: {...turn("x"), status: "maybe"}});
        assert.equal(badTurn.type, "failure");
        const traversal = await socket.call(5, "getConversation", {id: "../settings"});
        assert.equal((traversal as {error: {code: string}}).error.code, "bad_request");
        const list = await socket.call(6, "listConversations", {});
        assert.deepEqual((list as {output: {id: string}[]}).output.map((c) => c.id), [id]);
    });

    it("saves settings, says which wait for a restart, and refuses unknown or out-of-range fields", async () => {
        const before = await engine.getSettings();
        assert.equal(before.settings.theme, "system");
        assert.deepEqual(before.pendingRestart, []);
        const changed = await engine.changeSettings({theme: "dark", threads: 3, strategy: "hkvd", ratio: 0.3});
        assert.equal(changed.settings.theme, "dark");
        assert.deepEqual(changed.pendingRestart, ["threads"]);
        const saved = JSON.parse(await readFile(path.join(temp.dir, "data", "settings.json"), "utf8")) as Record<string, unknown>;
        assert.equal(saved.theme, "dark");
        assert.equal(saved.threads, 3);
        for (const input of [{theme: "purple"}, {ratio: 2}, {colour: "red"}]) {
            const reply = await socket.call(10, "changeSettings", input);
            assert.equal(reply.type, "failure", JSON.stringify(input));
        }
        assert.equal((await engine.getSettings()).settings.strategy, "hkvd");
    });

    it("keeps every field of settings changed at the same moment", async () => {
        // The settings page sends one change per control: picking a theme and then a strategy in quick succession
        // put two changes in flight together, and each used to write the file back without the other's field.
        const changes = [{theme: "light"}, {strategy: "naive"}, {ratio: 0.25}, {theme: "dark"}, {threads: 2}] as const;
        const views = await Promise.all(changes.map((change) => engine.changeSettings(change)));
        const {settings} = await engine.getSettings();
        assert.equal(settings.theme, "dark", "the later of two changes to one field wins");
        assert.equal(settings.strategy, "naive");
        assert.equal(settings.ratio, 0.25);
        assert.equal(settings.threads, 2);
        const saved = JSON.parse(await readFile(path.join(temp.dir, "data", "settings.json"), "utf8")) as Record<string, unknown>;
        assert.deepEqual([saved.theme, saved.strategy, saved.ratio, saved.threads], ["dark", "naive", 0.25, 2]);
        assert.equal(views.at(-1)!.settings.strategy, "naive", "each reply holds the changes made before it");
    });

    it("gives cache totals per tier", async () => {
        const overview = await engine.getCacheOverview();
        assert.equal(overview.ram.entries, 0);
        assert.equal(overview.hitRate, null);
        assert.equal(overview.codecBytesSaved, null);
        assert.ok(overview.disk.budgetBytes > 0);
    });

    it("opens documents inside the library only", async () => {
        const opened = await engine.openDocument({path: path.join(docs, "guide.md")});
        assert.equal(opened.kind, "text");
        assert.match(opened.kind === "text" ? opened.text : "", /mount command/);
        for (const outside of [path.join(temp.dir, "secret.txt"), path.join(docs, "escape.txt"), path.join(docs, "..", "secret.txt"), "guide.md",
            path.join(docs, "missing.md")])
            await assert.rejects(engine.openDocument({path: outside}), (error: Error & {code?: string}) => error.code === "not_found", outside);
        assert.equal((await engine.resolveDocument({path: path.join(docs, "guide.md")})).path, await realpath(path.join(docs, "guide.md")));
        await assert.rejects(engine.resolveDocument({path: path.join(docs, "escape.txt")}), /not a document in the library/);
        // In-process hosts (serve) have no system viewer: the desktop shell answers this one.
        await assert.rejects(engine.showInSystemViewer(), /desktop app/);
    });
});
