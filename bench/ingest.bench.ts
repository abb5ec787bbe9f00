// Ingestion throughput: the real ingestFolder into a real LibraryStore, over generated corpora.
//   npm run bench -- ingest [--files N] [--no-model] [--json]
import {existsSync} from "node:fs";
import {mkdir, writeFile} from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";
import {ingestFolder} from "../main/engine/library/ingest.js";
import {estimateTokenizer, type Tokenizer} from "../main/engine/library/library.js";
import {LibraryStore} from "../main/engine/library/store.js";
import {benchArgs, formatCount, loadNote, log, pick, Report, seededRandom, timed, Vocabulary, withPeakRss, withTempDir} from "./harness.js";

const args = benchArgs({
    files: {type: "string", default: "10000"},
    "no-model": {type: "boolean", default: false}
});
const fileCount = Number.parseInt(args.files, 10);
if (!(fileCount > 0))
    throw new Error(`--files must be a positive integer, got ${args.files}`);

const targetFilesPerSecond = 200;
const modelPath = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "shared", "models", "llama-2-tiny-random.gguf");

const report = new Report("ingest", [
    {key: "files", header: "files"},
    {key: "changed", header: "changed"},
    {key: "mb", header: "MB", digits: 1},
    {key: "seconds", header: "seconds", digits: 2},
    {key: "filesPerSecond", header: "files/s", digits: 0},
    {key: "mbPerSecond", header: "MB/s", digits: 2},
    {key: "peakRssMb", header: "peak RSS MB", digits: 0},
    {key: "chunks", header: "chunks"},
    {key: "target", header: "target"},
    {key: "pass", header: "pass"}
], args.json);

type Kind = "markdown" | "small" | "large";

function markdown(vocab: Vocabulary, random: () => number, bytes: number): string {
    const parts = [`# ${vocab.sentence(2, 5).slice(0, -1)}\n`];
    let length = parts[0]!.length;
    while (length < bytes) {
        const roll = random();
        const part = roll < 0.15 ? `## ${vocab.sentence(1, 4).slice(0, -1)}\n`
            : roll < 0.25 ? Array.from({length: 3 + Math.floor(random() * 4)}, () => `- ${vocab.sentence(3, 9)}`).join("\n") + "\n"
                : Array.from({length: 3 + Math.floor(random() * 5)}, () => vocab.sentence(6, 18)).join(" ") + "\n";
        parts.push(part);
        length += part.length + 1;
    }
    return parts.join("\n");
}

function prose(vocab: Vocabulary, random: () => number, bytes: number): string {
    const parts: string[] = [];
    let length = 0;
    while (length < bytes) {
        const part = Array.from({length: 2 + Math.floor(random() * 6)}, () => vocab.sentence(5, 20)).join(" ");
        parts.push(part);
        length += part.length + 2;
    }
    return parts.join("\n\n") + "\n";
}

function code(vocab: Vocabulary, random: () => number, bytes: number): string {
    const parts: string[] = [];
    let length = 0;
    while (length < bytes) {
        const name = `${vocab.word()}_${vocab.word()}`;
        const body = Array.from({length: 2 + Math.floor(random() * 8)},
            () => `    const ${vocab.word()} = ${vocab.word()}(${vocab.word()}, ${Math.floor(random() * 1000)});`).join("\n");
        const part = `// ${vocab.sentence(4, 12)}\nexport function ${name}(${vocab.word()}: number) {\n${body}\n    return ${vocab.word()};\n}\n`;
        parts.push(part);
        length += part.length + 1;
    }
    return parts.join("\n");
}

/** Writes `count` files, 100 a folder; returns total bytes. Same seed, same corpus. */
async function makeCorpus(dir: string, count: number, kindOf: (i: number, random: () => number) => Kind): Promise<number> {
    const random = seededRandom(42);
    const vocab = new Vocabulary(random, 4000);
    let bytes = 0;
    for (let i = 0; i < count; i++) {
        const kind = kindOf(i, random);
        let name: string;
        let text: string;
        if (kind === "markdown") {
            name = `note-${i}.md`;
            text = markdown(vocab, random, 3800 + Math.floor(random() * 500));
        } else {
            const type = pick(random, ["txt", "ts", "py"] as const);
            const size = kind === "small" ? 400 + Math.floor(random() * 200) : 60_000 + Math.floor(random() * 8000);
            name = `${kind}-${i}.${type}`;
            text = type === "txt" ? prose(vocab, random, size) : code(vocab, random, size);
        }
        const folder = path.join(dir, `d${String(Math.floor(i / 100)).padStart(3, "0")}`);
        if (i % 100 === 0)
            await mkdir(folder, {recursive: true});
        await writeFile(path.join(folder, name), text);
        bytes += Buffer.byteLength(text);
    }
    return bytes;
}

/**
 * Where ingest time goes on the store side: the instance's methods are wrapped (ingest.ts is untouched).
 * A call made from inside another is keyed "outer>inner" so the top-level keys add up to the store's share.
 */
function timeStoreCalls(store: LibraryStore): Map<string, number> {
    const totals = new Map<string, number>();
    const active: string[] = [];
    const methods = ["commitDocuments", "putDocumentRows", "ensureFtsIndex", "documentsOf", "countChunks", "addFolder", "markFolderIndexed",
        "removeDocuments", "tidy"] as const;
    const wrap = (target: Record<string, unknown>, method: string, name: string) => {
        const original = (target[method] as (...args: unknown[]) => Promise<unknown>).bind(target);
        target[method] = async (...callArgs: unknown[]) => {
            const key = active.length > 0 ? `${active.at(-1)}>${name}` : name;
            active.push(name);
            const start = performance.now();
            try {
                return await original(...callArgs);
            } finally {
                active.pop();
                totals.set(key, (totals.get(key) ?? 0) + (performance.now() - start) / 1000);
            }
        };
    };
    for (const method of methods)
        wrap(store as unknown as Record<string, unknown>, method, method);
    // The chunk table's own writes split commitDocuments into its add and its two deletes. It is a private field:
    // if it is renamed this detail is lost, not the measurement.
    const chunks = (store as unknown as {chunks?: Record<string, unknown>}).chunks;
    for (const method of ["add", "delete"])
        if (typeof chunks?.[method] === "function")
            wrap(chunks, method, `chunks.${method}`);
    return totals;
}

async function measure(options: {label: string, folder: string, dataDir: string, bytes: number, tokenizer: Tokenizer, target: boolean}) {
    const store = await LibraryStore.open(options.dataDir);
    try {
        const storeTime = timeStoreCalls(store);
        log(`${options.label}: ingesting`);
        const {result: {result: summary, seconds}, peakRssMb} = await withPeakRss(() => timed(() => ingestFolder(store, options.folder, {
            dataDir: options.dataDir,
            countTokens: options.tokenizer.countTokens,
            tokenizer: options.tokenizer.kind
        })));
        const files = summary.files + summary.skipped.length + summary.errors.length;
        if (summary.errors.length > 0)
            throw new Error(`${options.label}: ${summary.errors.length} files failed, first: ${summary.errors[0]!.reason}`);
        const filesPerSecond = files / seconds;
        report.add({
            row: options.label,
            files,
            changed: summary.changedFiles,
            mb: options.bytes / 2 ** 20,
            seconds,
            filesPerSecond,
            mbPerSecond: options.bytes / 2 ** 20 / seconds,
            peakRssMb,
            chunks: summary.chunks,
            target: options.target ? `>= ${targetFilesPerSecond} files/s` : null,
            pass: options.target ? filesPerSecond >= targetFilesPerSecond : null
        });
        const inStore = [...storeTime].filter(([key]) => !key.includes(">")).reduce((sum, [, s]) => sum + s, 0);
        const breakdown = [...storeTime].filter(([, s]) => s >= 0.01).sort((a, b) => b[1] - a[1]).map(([name, s]) => `${name} ${s.toFixed(2)}`);
        report.note(`  ${options.label}: ${seconds.toFixed(2)} s = store ${inStore.toFixed(2)} s + walk/parse/hash/chunk/journal `
            + `${(seconds - inStore).toFixed(2)} s; store calls, outer>inner: ${breakdown.join(", ")}`);
    } finally {
        store.close();
    }
}

async function modelTokenizer(): Promise<{tokenizer: Tokenizer, dispose: () => Promise<void>} | string> {
    if (args["no-model"])
        return "skipped (--no-model)";
    if (!existsSync(modelPath))
        return `skipped (${modelPath} not found)`;
    const llama = await getLlama({gpu: false, build: "never", maxThreads: 1, logLevel: LlamaLogLevel.error, progressLogs: false});
    const model = await llama.loadModel({modelPath, vocabOnly: true});
    return {
        tokenizer: {countTokens: (text) => model.tokenize(text).length, kind: "model"},
        dispose: async () => {
            await model.dispose();
            await llama.dispose();
        }
    };
}

const n = formatCount(fileCount);
const loadAtStart = os.loadavg()[0]!;
await withTempDir("ingest", async (tmp) => {
    const markdownDir = path.join(tmp, "markdown");
    log(`writing ${fileCount} x 4 KB Markdown files`);
    const markdownBytes = await makeCorpus(markdownDir, fileCount, () => "markdown");
    await measure({label: `${n} x 4KB markdown, no embeddings`, folder: markdownDir, dataDir: path.join(tmp, "data-md"),
        bytes: markdownBytes, tokenizer: estimateTokenizer, target: true});

    const model = await modelTokenizer();
    const modelLabel = `${n} x 4KB markdown, model tokenizer`;
    if (typeof model === "string")
        report.add({row: `${modelLabel}: ${model}`});
    else {
        try {
            await measure({label: modelLabel, folder: markdownDir, dataDir: path.join(tmp, "data-md-model"), bytes: markdownBytes,
                tokenizer: model.tokenizer, target: true});
        } finally {
            await model.dispose();
        }
    }

    // Mostly notes, with a tenth tiny files and a twentieth big ones (many chunks each).
    const mixedDir = path.join(tmp, "mixed");
    log(`writing ${fileCount} mixed files`);
    const mixedBytes = await makeCorpus(mixedDir, fileCount, (_i, random) => {
        const roll = random();
        return roll < 0.1 ? "small" : roll < 0.15 ? "large" : "markdown";
    });
    const mixedData = path.join(tmp, "data-mixed");
    await measure({label: `${n} mixed (85% md 4KB, 10% 0.5KB, 5% 64KB txt/code)`, folder: mixedDir, dataDir: mixedData,
        bytes: mixedBytes, tokenizer: estimateTokenizer, target: false});
    await measure({label: "re-run, mixed corpus unchanged", folder: mixedDir, dataDir: mixedData, bytes: mixedBytes,
        tokenizer: estimateTokenizer, target: false});
});

report.note(loadNote(loadAtStart));
report.print();
