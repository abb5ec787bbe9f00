// Starts `weft serve` (the real server, as a child process) and a headless Chromium for the e2e tests.
import {execFile, spawn, type ChildProcess} from "node:child_process";
import {promisify} from "node:util";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {chromium, type Browser} from "playwright-core";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const weftBin = path.join(repoRoot, "bin/weft.js");
export const tinyModelPath = path.resolve(repoRoot, "../shared/models/stories260K.gguf");

const childEnv = () => ({...process.env, WEFT_THREADS: "1"});

/** `weft models add PATH --data DIR`; throws with the CLI's output when it fails. */
export async function registerModel(dataDir: string, modelPath: string): Promise<void> {
    try {
        await promisify(execFile)(process.execPath, [weftBin, "models", "add", modelPath, "--data", dataDir], {
            cwd: repoRoot, env: childEnv(), timeout: 120_000
        });
    } catch (error) {
        const {stdout, stderr} = error as {stdout?: string; stderr?: string};
        throw new Error(`weft models add failed: ${String(error)}\n${stdout ?? ""}\n${stderr ?? ""}`);
    }
}

export type RunningServer = {
    /** The URL exactly as printed, token fragment included. */
    url: string;
    origin: string;
    child: ChildProcess;
    /** Everything the server printed so far (for failure messages). */
    output(): string;
    stop(): Promise<void>;
};

const servingLine = /Weft is serving at (http:\/\/\S+)/;

/**
 * Runs `command args` (by default `node bin/weft.js serve --port 0 --data DIR`) and waits for the
 * "Weft is serving at URL" line. Port 0 lets the server pick a free port; the printed URL has the real one.
 */
export function startServe(dataDir: string, options: {command?: string[]; timeoutMs?: number} = {}): Promise<RunningServer> {
    const [command, ...args] = options.command ?? [process.execPath, weftBin, "serve", "--port", "0", "--data", dataDir];
    const child = spawn(command!, args, {cwd: repoRoot, env: childEnv(), stdio: ["ignore", "pipe", "pipe"]});
    let log = "";
    let exited = false;
    const exitedPromise = new Promise<void>((resolve) => child.once("exit", () => {
        exited = true;
        resolve();
    }));

    const stop = async () => {
        if (exited)
            return;
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exitedPromise;
        clearTimeout(timer);
    };

    return new Promise<RunningServer>((resolve, reject) => {
        let settled = false;
        const fail = (why: string) => {
            if (settled)
                return;
            settled = true;
            clearTimeout(timer);
            void stop().then(() => reject(new Error(`${why}\n--- weft serve output ---\n${log}`)));
        };
        const timer = setTimeout(() => fail(`weft serve printed no URL within ${options.timeoutMs ?? 60_000} ms`), options.timeoutMs ?? 60_000);

        const onOutput = (chunk: Buffer) => {
            log += chunk.toString();
            const match = servingLine.exec(log);
            if (match !== null && !settled) {
                settled = true;
                clearTimeout(timer);
                const url = match[1]!;
                resolve({url, origin: new URL(url).origin, child, output: () => log, stop});
            }
        };
        child.stdout!.on("data", onOutput);
        child.stderr!.on("data", (chunk: Buffer) => {
            log += chunk.toString();
        });
        child.once("error", (error) => fail(`could not start weft serve: ${error.message}`));
        child.once("exit", (code, signal) => fail(`weft serve exited early (${code ?? signal})`));
    });
}

/** The system Chromium, headless; playwright never downloads a browser here. */
export function launchChromium(): Promise<Browser> {
    return chromium.launch({
        executablePath: "/usr/bin/chromium",
        headless: true,
        args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
    });
}
