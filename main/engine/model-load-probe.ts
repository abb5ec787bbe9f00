import {spawn} from "node:child_process";
import {stat} from "node:fs/promises";
import path from "node:path";
import {z} from "zod";
import {EngineError} from "../contract/index.js";
import {readJsonOr, writeJsonAtomic} from "./json-file.js";
import type {GpuChoice} from "./llama-runtime.js";

// Runs in the child: loads the model and a small context with node-llama-cpp, then exits. argv: module URL, model path, gpu.
const childScript = `
const [moduleUrl, modelPath, gpu] = process.argv.slice(1);
const {getLlama, LlamaLogLevel} = await import(moduleUrl);
const llama = await getLlama({gpu: gpu === "false" ? false : gpu, build: "never", maxThreads: 1, logLevel: LlamaLogLevel.error, progressLogs: false});
const model = await llama.loadModel({modelPath, gpuLayers: 0});
const context = await model.createContext({contextSize: 256, threads: 1, sequences: 1});
await context.dispose();
await model.dispose();
process.exit(0);
`;

/**
 * Loads a model once in a child process. llama.cpp ends the process on some bad files (an assertion is an abort, not
 * an error), so the first load of a file happens where that costs nothing: a child that dies by a signal becomes a
 * `model_invalid` error here. A child that fails with an ordinary error passes, and the real load reports it.
 */
export async function probeModelLoad(modelPath: string, options: {gpu: GpuChoice, timeoutMs?: number}): Promise<void> {
    const moduleUrl = import.meta.resolve("node-llama-cpp");
    const child = spawn(process.execPath, ["--input-type=module", "-e", childScript, moduleUrl, modelPath, String(options.gpu)], {
        stdio: ["ignore", "ignore", "pipe"],
        env: {...process.env, ELECTRON_RUN_AS_NODE: "1"}
    });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (text: string) => {
        stderr = (stderr + text).slice(-4000);
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 10 * 60_000);
    const {code, signal} = await new Promise<{code: number | null, signal: NodeJS.Signals | null}>((resolve, reject) => {
        child.once("error", reject);
        child.once("close", (exitCode, exitSignal) => resolve({code: exitCode, signal: exitSignal}));
    }).finally(() => clearTimeout(timer));

    // 134 is a shell's way of reporting SIGABRT; llama.cpp's GGML_ABORT raises it. Any other failure that printed a
    // ggml assertion is the same crash reported another way.
    if (signal != null || code === 134 || (code !== 0 && /GGML_ASSERT|GGML_ABORT/.test(stderr))) {
        const assertion = stderr.split("\n").map((line) => line.trim()).filter((line) => /assert|abort|error|failed/i.test(line)).slice(-2).join("; ");
        throw new EngineError("model_invalid", `llama.cpp stopped while loading ${path.basename(modelPath)} (${signal ?? `exit ${code}`})` +
            `${assertion !== "" ? `: ${assertion.slice(0, 400)}` : ""}; the file is damaged or not supported by this version`);
    }
}

const ChecksFile = z.object({version: z.literal(1), loaded: z.array(z.string())});

/**
 * The model files that have loaded once in a child (by path, size and modification time), kept in the data folder so
 * each file is probed once, not at every start.
 */
export class ModelLoadChecks {
    private readonly filePath: string;

    public constructor(dataDir: string, private readonly gpu: GpuChoice) {
        this.filePath = path.join(dataDir, "model-checks.json");
    }

    public async ensure(modelPath: string): Promise<void> {
        const info = await stat(modelPath);
        const key = `${modelPath}\0${info.size}\0${info.mtimeMs}`;
        const file = await readJsonOr(this.filePath, ChecksFile, {version: 1, loaded: []});
        if (file.loaded.includes(key))
            return;

        await probeModelLoad(modelPath, {gpu: this.gpu});
        const latest = await readJsonOr(this.filePath, ChecksFile, {version: 1, loaded: []});
        await writeJsonAtomic(this.filePath, {version: 1, loaded: [...latest.loaded.filter((entry) => !entry.startsWith(`${modelPath}\0`)), key]});
    }
}
