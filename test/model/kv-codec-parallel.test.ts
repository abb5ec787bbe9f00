// The KV codec's GPU decoder, checked where CI can run it: its steps (native/src/kv_codec_parallel.h, what
// kv_codec_cuda.cu runs as kernels) are run thread index by thread index on the CPU by native/tools/kv_codec_parallel_check.cpp
// against the host decoder, on synthetic containers of every level and mode and on stories260K's real chunk caches as
// the engine encodes them (both V layouts), then on thousands of mutations of them: the same bits out, the same files
// refused. The check is shown to catch a wrong raw-bit offset (--sabotage). Where nvcc is installed, the CUDA file is
// compiled for Hopper and its six kernels must come out of ptxas. Running the kernels needs a GPU:
// scripts/gpu-codec-check.sh.
import assert from "node:assert/strict";
import {spawnSync} from "node:child_process";
import {readFile, writeFile} from "node:fs/promises";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {after, before, describe, it} from "node:test";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";
import {encodeKvBody} from "../../main/engine/kv/kv-codec.js";
import {ropeParamsFromGguf} from "../../main/engine/kv/rope-params.js";
import {parseSeqStateFile} from "../helpers/seq-state-file.js";
import {makeTempDir, stories260kPath, testThreads} from "../helpers/paths.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const src = path.join(root, "native", "src");
const codecSources = ["tables", "encode", "decode", "format", "output", "parallel_plan"].map((name) => path.join(src, `kv_codec_${name}.cpp`));
const chunkText = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her red ball. " +
    "One day she saw a big dog. The dog was brown and it wanted to play too.";

type Summary = {files: number, given: number, modes: number[], rawBits: number, escapes: number, mutations: number, refused: number, decoded: number, differences: number};

function summaryOf(output: string): Summary {
    const match = /parallel-check: (\d+) files \((\d+) given; sections in modes 0\/1\/2: (\d+)\/(\d+)\/(\d+), with raw bits (\d+), with escapes (\d+)\) and (\d+) mutations \((\d+) refused, (\d+) decoded\): (\d+) differences/.exec(output);
    assert.ok(match != null, `no summary line in:\n${output}`);
    const n = match.slice(1).map(Number);
    return {files: n[0]!, given: n[1]!, modes: [n[2]!, n[3]!, n[4]!], rawBits: n[5]!, escapes: n[6]!, mutations: n[7]!, refused: n[8]!, decoded: n[9]!,
        differences: n[10]!};
}

describe("the KV codec's GPU decoder steps, run on the CPU", {timeout: 600_000}, () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let checker = "";
    const files: string[] = [];

    before(async () => {
        temp = await makeTempDir("weft-kv-parallel-");
        checker = path.join(temp.dir, "kv_codec_parallel_check");
        const build = spawnSync("g++", ["-O2", "-std=c++17", "-pthread", `-I${src}`, ...codecSources,
            path.join(root, "native", "tools", "kv_codec_parallel_check.cpp"), "-o", checker], {encoding: "utf8"});
        assert.equal(build.status, 0, `g++ failed:\n${build.stderr}`);

        // stories260K's KV of a real chunk, with flash attention (V in rows) and without (V transposed), encoded as the
        // engine encodes chunk caches (K un-rotated with the model's RoPE), at the most exact, default and most compact levels.
        const llama = await getLlama({gpu: false, maxThreads: testThreads, logLevel: LlamaLogLevel.error});
        const model = await llama.loadModel({modelPath: stories260kPath});
        const rope = ropeParamsFromGguf(model.fileInfo);
        try {
            for (const flashAttention of [true, false]) {
                const context = await model.createContext({contextSize: 256, threads: testThreads, sequences: 1, flashAttention});
                const sequence = context.getSequence();
                await sequence.evaluateWithoutGeneratingNewTokens(model.tokenize(chunkText, true));
                const state = path.join(temp.dir, `state-${flashAttention}.bin`);
                await sequence.saveStateToFile(state);
                const {body} = parseSeqStateFile(await readFile(state));
                await context.dispose();
                for (const level of [0, 4, 5]) {
                    const file = path.join(temp.dir, `chunk-${flashAttention}-${level}.wkvz`);
                    await writeFile(file, await encodeKvBody(body, {level, fingerprint: "0".repeat(32), rope, threads: testThreads}));
                    files.push(file);
                }
            }
        } finally {
            await model.dispose();
        }
    });

    after(async () => {
        await temp?.cleanup();
    });

    it("decodes every container to the host decoder's bits and refuses the same mutations", () => {
        const run = spawnSync(checker, ["3000", ...files], {encoding: "utf8"});
        assert.equal(run.status, 0, run.stdout + run.stderr);
        const summary = summaryOf(run.stdout);
        assert.equal(summary.differences, 0);
        assert.equal(summary.given, files.length);
        assert.ok(summary.files >= 192 + files.length, `${summary.files} files`);
        // Every path of the steps was taken: each grouping mode, raw low bits, escapes; mutations both refused and decoded.
        assert.ok(summary.modes.every((count) => count > 0) && summary.rawBits > 0 && summary.escapes > 0, JSON.stringify(summary));
        assert.equal(summary.mutations, 3000);
        assert.ok(summary.refused > 0 && summary.decoded > 0, JSON.stringify(summary));
    });

    it("fails when a row's raw bits are read one bit off", () => {
        const run = spawnSync(checker, ["100", "--sabotage", ...files], {encoding: "utf8"});
        assert.equal(run.status, 1, run.stdout + run.stderr);
        assert.ok(summaryOf(run.stdout).differences > 0);
        assert.match(run.stdout, /outputs differ/);
    });

    const nvcc = spawnSync("nvcc", ["--version"], {encoding: "utf8"});
    it("compiles for Hopper with every kernel", {skip: nvcc.status !== 0 ? "nvcc is not installed here" : false}, () => {
        const build = spawnSync("nvcc", ["-O3", "-std=c++17", "-arch=sm_90", `-I${src}`, "-Xptxas", "-v", "-c", path.join(src, "kv_codec_cuda.cu"),
            "-o", path.join(temp.dir, "kv_codec_cuda.o")], {encoding: "utf8"});
        assert.equal(build.status, 0, build.stderr);
        const kernels = [...build.stderr.matchAll(/Compiling entry function '[^']*?\d([a-z][A-Za-z]*Kernel)E/g)].map((match) => match[1]).sort();
        assert.deepEqual(kernels, ["channelsKernel", "countsKernel", "rotateKernel", "scanKernel", "symbolsKernel", "valuesKernel"]);
    });
});
