import assert from "node:assert/strict";
import {spawn} from "node:child_process";
import {createHash} from "node:crypto";
import {mkdir, readFile, writeFile} from "node:fs/promises";
import {createServer, type Server} from "node:http";
import type {AddressInfo} from "node:net";
import {after, before, describe, it} from "node:test";
import path from "node:path";
import {AskResult, IngestSummary, ModelInfo} from "../../main/contract/index.js";
import {ensureFixtureModel} from "../fixtures/make-tiny-models.js";
import {makeTempDir, stories260kPath, weftBin} from "../helpers/paths.js";
import {weft} from "../helpers/weft-cli.js";

describe("weft CLI (built bin, real model)", () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;

    before(async () => {
        temp = await makeTempDir();
    });

    after(async () => {
        await temp.cleanup();
    });

    it("ask --json prints one JSON answer with the stats", async () => {
        const result = await weft(["ask", "--model", stories260kPath, "--data", temp.dir, "--json", "--max-tokens", "32", "Once upon a time"]);
        assert.equal(result.code, 0, result.stderr);
        const lines = result.stdout.trim().split("\n");
        assert.equal(lines.length, 1);
        const parsed = AskResult.parse(JSON.parse(lines[0]!));
        assert.ok(parsed.answer.startsWith(", there was a little girl named Lily"), parsed.answer);
        assert.deepEqual(parsed.citations, []);
        for (const key of ["promptTokens", "ttftMs", "totalMs", "tokensPerSecond", "backend"] as const)
            assert.ok(key in parsed.stats, key);

        assert.equal(parsed.stats.backend, "cpu");
        assert.equal(parsed.stats.completionTokens, 32);
    });

    it("ask streams plain text to stdout and a stats line to stderr", async () => {
        const result = await weft(["ask", "--data", temp.dir, "--max-tokens", "12", "Once upon a time"]);
        assert.equal(result.code, 0, result.stderr);
        assert.ok(result.stdout.startsWith(", there was a little girl"), result.stdout);
        assert.match(result.stderr, /prompt tokens, 12 generated, first token \d+ ms/);
    });

    it("WEFT_DATA chooses the library when --data is absent", async () => {
        const result = await weft(["models", "list", "--json"], {WEFT_DATA: temp.dir});
        assert.equal(result.code, 0, result.stderr);
        const models = ModelInfo.array().parse(JSON.parse(result.stdout));
        assert.deepEqual(models.map((model) => model.id), ["stories260k"]);
    });

    it("ingest --json summarises a folder; ask --json then cites its files", async () => {
        const folder = `${temp.dir}/docs`;
        await mkdir(folder, {recursive: true});
        await writeFile(`${folder}/lighthouse.md`, "# Lighthouse\n\nThe zanzibar lighthouse keeper polished the lens every night.\n");
        await writeFile(`${folder}/garden.txt`, "Tomatoes and basil grow well together in a sunny garden.\n");
        await writeFile(`${folder}/broken.pdf`, "%PDF-1.4\nnot really a pdf");
        await writeFile(`${folder}/blob.bin`, Buffer.from([0, 1, 2, 3, 0, 0, 255]));

        const ingested = await weft(["ingest", folder, "--data", temp.dir, "--json"]);
        assert.equal(ingested.code, 0, ingested.stderr);
        const summary = IngestSummary.parse(JSON.parse(ingested.stdout.trim().split("\n").at(-1)!));
        assert.equal(summary.files, 2);
        assert.ok(summary.chunks >= 2);
        assert.deepEqual(summary.errors.map((problem) => path.basename(problem.path)), ["broken.pdf"]);
        assert.deepEqual(summary.skipped.map((problem) => path.basename(problem.path)), ["blob.bin"]);
        assert.match(ingested.stderr, /Indexing 100%/);

        const asked = await weft(["ask", "--data", temp.dir, "--model", stories260kPath, "--json", "--max-tokens", "8", "zanzibar lighthouse keeper"]);
        assert.equal(asked.code, 0, asked.stderr);
        const result = AskResult.parse(JSON.parse(asked.stdout));
        assert.equal(result.citations[0]?.path, path.join(folder, "lighthouse.md"));
        assert.equal(result.citations[0]?.n, 1);
        assert.match(result.citations[0]?.text ?? "", /polished the lens/);
    });

    it("names an unknown flag and exits 2", async () => {
        const result = await weft(["ask", "--data", temp.dir, "--frobnicate", "hello"]);
        assert.equal(result.code, 2);
        assert.match(result.stderr, /unknown option '--frobnicate'/);
    });

    it("explains a missing or non-GGUF model and exits 1", async () => {
        const missing = await weft(["ask", "--data", temp.dir, "--model", "/no/such/model.gguf", "--json", "hi"]);
        assert.equal(missing.code, 1);
        assert.equal(JSON.parse(missing.stdout).error.code, "model_missing");

        const notModel = await weft(["models", "add", weftBin, "--data", temp.dir]);
        assert.equal(notModel.code, 1);
        assert.match(notModel.stderr, /is not a GGUF model file/);
    });

    describe("models pull from a local HTTP server", () => {
        let server: Server;
        let baseUrl: string;
        let modelBytes: Buffer;
        // Phase "stall": only the range from byte 0 is served, every other range hangs, as a flaky network would;
        // phase "normal": everything is served. The downloader probes the size with an unranged GET, which it
        // drops after the headers; that one is always answered and not counted.
        let phase: "stall" | "normal" = "stall";
        const rangedBytesSent = {stall: 0, normal: 0};
        const normalRangeStarts: number[] = [];
        const openResponses = new Set<import("node:http").ServerResponse>();

        before(async () => {
            // Bigger than two of the downloader's 5 MiB resume chunks, so a resume is observable.
            modelBytes = await readFile(await ensureFixtureModel("tiny-spm"));
            server = createServer((request, response) => {
                const range = /^bytes=(\d+)-(\d*)/.exec(request.headers.range ?? "");
                const start = range != null ? Number(range[1]) : 0;
                const end = range != null && range[2] !== "" ? Number(range[2]) + 1 : modelBytes.length;
                const body = modelBytes.subarray(start, end);
                response.writeHead(range != null ? 206 : 200, {
                    "Content-Length": String(body.length),
                    "Accept-Ranges": "bytes",
                    "Content-Type": "application/octet-stream",
                    ...(range != null ? {"Content-Range": `bytes ${start}-${end - 1}/${modelBytes.length}`} : {})
                });
                openResponses.add(response);
                response.on("close", () => openResponses.delete(response));
                if (request.method === "HEAD")
                    return void response.end();

                if (range == null)
                    return void response.end(body);

                if (phase === "normal")
                    normalRangeStarts.push(start);

                if (phase === "normal" || start === 0) {
                    rangedBytesSent[phase] += body.length;
                    response.end(body);
                }
            });
            await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
            baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
        });

        after(async () => {
            for (const response of openResponses)
                response.destroy();

            server.closeAllConnections();
            await new Promise<void>((resolve) => server.close(() => resolve()));
        });

        it("downloads with progress, resumes an interrupted download, and registers the model", async () => {
            const dataDir = `${temp.dir}/pull`;
            const url = `${baseUrl}/fixture-pulled.gguf`;

            const interrupted = spawn(process.execPath, [weftBin, "models", "pull", url, "--data", dataDir], {stdio: ["ignore", "pipe", "pipe"]});
            let interruptedStderr = "";
            interrupted.stderr.on("data", (chunk) => (interruptedStderr += chunk));
            const exited = new Promise<number | null>((resolve) => interrupted.on("close", resolve));
            for (let waited = 0; rangedBytesSent.stall === 0 && waited < 60_000; waited += 50)
                await new Promise((resolve) => setTimeout(resolve, 50));

            assert.ok(rangedBytesSent.stall > 0, "the first download never fetched its first range");
            // Give the downloader a moment to persist its finished chunk, then interrupt it as Ctrl+C would.
            await new Promise((resolve) => setTimeout(resolve, 1500));
            interrupted.kill("SIGINT");
            assert.equal(await exited, 1);
            assert.match(interruptedStderr, /cancelled; run the same command again to resume/);

            for (const response of openResponses)
                response.destroy();

            phase = "normal";
            const resumed = await weft(["models", "pull", url, "--data", dataDir, "--json"]);
            assert.equal(resumed.code, 0, resumed.stderr);
            assert.match(interruptedStderr + resumed.stderr, /Downloading \d+%/);
            // The chunk finished before the interruption is kept; only later ranges are fetched again.
            assert.ok(normalRangeStarts.length > 0);
            assert.ok(normalRangeStarts.every((start) => start >= rangedBytesSent.stall),
                `the second run re-fetched kept bytes: range starts ${JSON.stringify(normalRangeStarts)}, ${rangedBytesSent.stall} bytes were kept`);

            const model = ModelInfo.parse(JSON.parse(resumed.stdout.trim().split("\n").at(-1)!));
            const downloaded = await readFile(model.path);
            assert.equal(createHash("sha256").update(downloaded).digest("hex"), createHash("sha256").update(modelBytes).digest("hex"));

            const answer = await weft(["ask", "--data", dataDir, "--model", model.id, "--json", "--max-tokens", "8", "Once upon a time"]);
            assert.equal(answer.code, 0, answer.stderr);
            assert.equal(AskResult.parse(JSON.parse(answer.stdout)).stats.modelId, model.id);
        });

        it("reports an unreachable host and an HTTP error clearly, and quickly", async () => {
            const closed = createServer();
            await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
            const closedPort = (closed.address() as AddressInfo).port;
            await new Promise<void>((resolve) => closed.close(() => resolve()));

            const unreachable = await weft(["models", "pull", `http://127.0.0.1:${closedPort}/x.gguf`, "--data", `${temp.dir}/pull2`]);
            assert.equal(unreachable.code, 1);
            assert.match(unreachable.stderr, /cannot reach 127\.0\.0\.1:\d+: ECONNREFUSED/);

            const missing = createServer((_request, response) => response.writeHead(404).end());
            await new Promise<void>((resolve) => missing.listen(0, "127.0.0.1", resolve));
            try {
                const notFound = await weft(["models", "pull", `http://127.0.0.1:${(missing.address() as AddressInfo).port}/x.gguf`, "--data", `${temp.dir}/pull2`]);
                assert.equal(notFound.code, 1);
                assert.match(notFound.stderr, /HTTP 404/);
            } finally {
                await new Promise<void>((resolve) => missing.close(() => resolve()));
            }
        });
    });
});
