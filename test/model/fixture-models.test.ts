// The random-weight llama fixtures load in node-llama-cpp, tokenize exactly like the llama.cpp vocab they copy, produce
// finite, varied logits, and are reproducible from their seed.
import assert from "node:assert/strict";
import {createHash} from "node:crypto";
import {spawnSync} from "node:child_process";
import {readFileSync, statSync} from "node:fs";
import {mkdtemp, rm} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, test} from "node:test";
import {getLlama, LlamaLogLevel, type Llama, type LlamaModel, type Token} from "node-llama-cpp";
import {readGgufHeader} from "../fixtures/gguf-writer.js";
import {ensureVocab, fixtureCacheDir, repoRoot} from "../fixtures/llama-source.js";
import {ensureFixtureModel, familyPresets, fixturePresets, makeTinyLlama} from "../fixtures/make-tiny-models.js";

const preset = fixturePresets["tiny-spm"];
const sentences = [
    "The quick brown fox jumps over the lazy dog.",
    "  Leading spaces, tabs\tand\nnewlines; numbers 12345 and 3.14159!",
    "Ünïcödé: naïve café, 東京, emoji 🦙🔥.",
    "def f(x):\n    return x ** 2  # code"
];

function sha256(file: string): string {
    return createHash("sha256").update(readFileSync(file)).digest("hex");
}

describe("fixture models (tiny-spm)", () => {
    let llama: Llama;
    let model: LlamaModel;
    let vocabModel: LlamaModel;
    let modelPath: string;

    before(async () => {
        modelPath = await ensureFixtureModel("tiny-spm");
        // Two cores here: one thread, or llama.cpp oversubscribes and runs about 1000x slower.
        llama = await getLlama({gpu: false, maxThreads: 1, logLevel: LlamaLogLevel.error});
        model = await llama.loadModel({modelPath});
        vocabModel = await llama.loadModel({modelPath: await ensureVocab(preset.vocab), vocabOnly: true});
    });

    after(async () => {
        await vocabModel?.dispose();
        await model?.dispose();
        await llama?.dispose();
    });

    test("the model reports the written architecture and shape", () => {
        const meta = model.fileInfo.metadata;
        assert.equal(meta.general.architecture, "llama");
        assert.equal(model.fileInfo.architectureMetadata.block_count, preset.layers);
        assert.equal(model.fileInfo.architectureMetadata.embedding_length, preset.embd);
        assert.equal(model.fileInfo.architectureMetadata.attention?.head_count, preset.heads);
        assert.equal(model.fileInfo.architectureMetadata.attention?.head_count_kv, preset.kvHeads);
        assert.equal(model.embeddingVectorSize, preset.embd);
        assert.equal(model.trainContextSize, preset.contextLength);
        assert.equal(model.fileInsights.embeddingVectorSize, preset.embd);
        assert.equal(model.fileInsights.trainContextSize, preset.contextLength);
        // 2 norms + 7 matrices per block, plus token_embd, output_norm, output.
        assert.equal(model.fileInfo.tensorInfo?.length, preset.layers * 9 + 3);
        const embd = preset.embd, kv = (embd / preset.heads) * preset.kvHeads, ff = preset.ff, vocab = 32000;
        const perBlock = 2 * embd + 2 * embd * embd + 2 * embd * kv + 3 * embd * ff;
        assert.equal(model.fileInsights.totalParameters, 2 * vocab * embd + embd + preset.layers * perBlock);
    });

    test("tokenizes and detokenizes exactly like the llama.cpp vocab-only model", () => {
        assert.equal(model.vocabularyType, vocabModel.vocabularyType);
        assert.equal(model.tokens.bos, vocabModel.tokens.bos);
        assert.equal(model.tokens.eos, vocabModel.tokens.eos);
        for (const text of sentences) {
            const tokens = model.tokenize(text);
            assert.ok(tokens.length > 3, text);
            assert.deepEqual(tokens, vocabModel.tokenize(text), text);
            assert.equal(model.detokenize(tokens), vocabModel.detokenize(tokens), text);
            assert.equal(model.detokenize(tokens), text, text);
        }
        const special = model.tokenize("<s>hello</s>", true);
        assert.deepEqual(special, vocabModel.tokenize("<s>hello</s>", true));
        assert.equal(special[0], model.tokens.bos);
    });

    test("a context evaluates a prompt to finite, varied logits and generates valid tokens", async () => {
        const context = await model.createContext({threads: 1, contextSize: 256});
        try {
            const sequence = context.getSequence();
            const nVocab = 32000;
            const prompt = [model.tokens.bos!, ...model.tokenize(sentences[0]!)];
            const results = await sequence.controlledEvaluate(prompt.map((token, i) =>
                i === 0 || i === prompt.length - 1 ? [token, {generateNext: {logits: true}}] : token));
            const vectors = [results[0], results.at(-1)].map((r) => {
                const logits = r?.next.logits;
                assert.ok(logits !== undefined, "logits were requested");
                assert.equal(logits.size, nVocab);
                const values = [...logits.values()];
                assert.ok(values.every(Number.isFinite), "all logits are finite");
                assert.ok(new Set(values).size > nVocab / 2, "logits are varied");
                const max = Math.max(...values), min = Math.min(...values);
                assert.ok(max - min > 1, `logit range ${min}..${max}`);
                return Float64Array.from({length: nVocab}, (_, t) => logits.get(t as Token) ?? NaN);
            });
            assert.notDeepEqual(vectors[0], vectors[1], "different positions give different logits");

            const generate = async (): Promise<Token[]> => {
                await sequence.clearHistory();
                const out: Token[] = [];
                for await (const token of sequence.evaluate(prompt, {temperature: 0})) {
                    out.push(token);
                    if (out.length === 24)
                        break;
                }
                return out;
            };
            const first = await generate();
            assert.equal(first.length, 24);
            assert.ok(first.every((t) => Number.isInteger(t) && t >= 0 && t < nVocab), `tokens ${first.join(",")}`);
            assert.ok(new Set(first).size > 1, `greedy tokens are not all identical: ${first.join(",")}`);
            assert.equal(typeof model.detokenize(first), "string");
            assert.deepEqual(await generate(), first, "greedy generation is deterministic");
        } finally {
            await context.dispose();
        }
    });
});

describe("fixture model files", () => {
    let dir: string;
    before(async () => {
        dir = await mkdtemp(path.join(fixtureCacheDir(), "seed-test-"));
    });
    after(async () => {
        await rm(dir, {recursive: true, force: true});
    });

    test("the same seed writes a byte-identical file; another seed differs only in weights", async () => {
        const a = await makeTinyLlama({...preset, outPath: path.join(dir, "a.gguf")});
        const b = await makeTinyLlama({...preset, outPath: path.join(dir, "b.gguf")});
        const c = await makeTinyLlama({...preset, seed: preset.seed + 1, outPath: path.join(dir, "c.gguf")});
        assert.equal(a.bytes, b.bytes);
        assert.equal(sha256(a.path), sha256(b.path));
        assert.equal(sha256(a.path), sha256(await ensureFixtureModel("tiny-spm")), "the cached preset is the same file");
        assert.equal(c.bytes, a.bytes);
        assert.notEqual(sha256(c.path), sha256(a.path));

        const ha = readGgufHeader(a.path), hc = readGgufHeader(c.path);
        assert.deepEqual(hc.tensors, ha.tensors, "same tensor layout");
        const dataA = readFileSync(a.path).subarray(ha.dataOffset), dataC = readFileSync(c.path).subarray(hc.dataOffset);
        assert.notDeepEqual(dataC, dataA);
    });

    test("f16 weights are written with f32 norms and the tokenizer keys copied verbatim", async () => {
        const out = await makeTinyLlama({...preset, layers: 1, weightType: "f16", outPath: path.join(dir, "f16.gguf")});
        const header = readGgufHeader(out.path);
        const vocab = readGgufHeader(await ensureVocab(preset.vocab));
        for (const t of header.tensors)
            assert.equal(t.type, t.name.endsWith("norm.weight") ? 0 : 1, t.name);
        assert.deepEqual(header.metadata.get("general.file_type"), {type: "u32", value: 1});
        const tokenizerKeys = [...vocab.metadata.keys()].filter((k) => k.startsWith("tokenizer."));
        assert.ok(tokenizerKeys.length >= 5);
        for (const key of tokenizerKeys)
            assert.deepEqual(header.metadata.get(key), vocab.metadata.get(key), key);
        for (const t of header.tensors)
            assert.equal(t.offset % header.alignment, 0, t.name);
    });
});

/** What each family preset must hold beyond the common tensors (llama.cpp's load_arch_tensors for that family). */
const familyExpectations: Record<(typeof familyPresets)[number], {architecture: string, tensors: string[], metadata: string[], absent: string[]}> = {
    "llama3-tiny": {architecture: "llama", tensors: ["rope_freqs.weight", "blk.1.attn_q.weight", "blk.1.ffn_gate.weight"], metadata: [], absent: []},
    "qwen2-tiny": {architecture: "qwen2", tensors: ["blk.1.attn_q.bias", "blk.1.attn_k.bias", "blk.1.attn_v.bias"], metadata: [], absent: ["rope_freqs.weight"]},
    "qwen3-tiny": {architecture: "qwen3", tensors: ["blk.1.attn_q_norm.weight", "blk.1.attn_k_norm.weight"], metadata: [], absent: ["blk.1.attn_q.bias"]},
    "phi3-tiny": {architecture: "phi3", tensors: ["blk.1.attn_qkv.weight", "blk.1.ffn_up.weight"], metadata: ["phi3.attention.sliding_window"],
        absent: ["blk.1.attn_q.weight", "blk.1.ffn_gate.weight", "rope_factors_long.weight"]},
    "gemma3-tiny": {architecture: "gemma3", tensors: ["blk.1.post_attention_norm.weight", "blk.1.post_ffw_norm.weight", "blk.1.attn_k_norm.weight"],
        metadata: ["gemma3.attention.sliding_window"], absent: []}
};

describe("fixture presets per model family", () => {
    let llama: Llama;
    before(async () => {
        llama = await getLlama({gpu: false, maxThreads: 1, logLevel: LlamaLogLevel.error});
    });
    after(async () => {
        await llama?.dispose();
    });

    test("`npm run fixtures -- NAME...` prints one line per preset whose last tab-separated field is the file", async () => {
        const names = [...familyPresets];
        const run = spawnSync(process.execPath, ["--import", "tsx", path.join(repoRoot, "test", "fixtures", "make-tiny-models.ts"), ...names],
            {encoding: "utf8", cwd: repoRoot});
        assert.equal(run.status, 0, run.stderr);
        const lines = run.stdout.trimEnd().split("\n");
        assert.equal(lines.length, names.length, run.stdout);
        for (const [index, line] of lines.entries()) {
            const fields = line.split("\t");
            assert.equal(fields[0], names[index]);
            const file = fields.at(-1)!;
            assert.equal(file, await ensureFixtureModel(names[index]!), "the cached preset's path");
            assert.ok(path.isAbsolute(file) && statSync(file).isFile(), file);
        }

        const bad = spawnSync(process.execPath, ["--import", "tsx", path.join(repoRoot, "test", "fixtures", "make-tiny-models.ts"), "gemma9-tiny"],
            {encoding: "utf8", cwd: repoRoot});
        assert.equal(bad.status, 2);
        assert.match(bad.stderr, /unknown preset: gemma9-tiny/);
        assert.match(bad.stderr, /llama3-tiny, qwen2-tiny, qwen3-tiny, phi3-tiny, gemma3-tiny/);
    });

    for (const name of familyPresets)
        test(`${name}: the family's tensors and tokenizer; llama.cpp loads it and tokenizes like the vocab`, async () => {
            const expected = familyExpectations[name];
            const modelPath = await ensureFixtureModel(name);
            const header = readGgufHeader(modelPath);
            assert.deepEqual(header.metadata.get("general.architecture"), {type: "string", value: expected.architecture});
            const tensorNames = new Set(header.tensors.map((tensor) => tensor.name));
            for (const tensor of expected.tensors)
                assert.ok(tensorNames.has(tensor), `${tensor} is written`);
            for (const tensor of expected.absent)
                assert.ok(!tensorNames.has(tensor), `${tensor} is not written`);
            for (const key of expected.metadata)
                assert.ok(header.metadata.has(key), key);

            const model = await llama.loadModel({modelPath});
            const vocabModel = await llama.loadModel({modelPath: await ensureVocab(fixturePresets[name].vocab), vocabOnly: true});
            try {
                assert.equal(model.fileInfo.metadata.general.architecture, expected.architecture);
                assert.equal(model.tokens.bos, vocabModel.tokens.bos);
                for (const text of sentences)
                    assert.deepEqual(model.tokenize(text), vocabModel.tokenize(text), text);
                const context = await model.createContext({threads: 1, contextSize: 128});
                try {
                    const sequence = context.getSequence();
                    const out: Token[] = [];
                    for await (const token of sequence.evaluate(model.tokenize(sentences[0]!), {temperature: 0})) {
                        out.push(token);
                        if (out.length === 4)
                            break;
                    }
                    assert.equal(out.length, 4);
                } finally {
                    await context.dispose();
                }
            } finally {
                await vocabModel.dispose();
                await model.dispose();
            }
        });
});
