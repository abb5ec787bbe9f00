import {spawn} from "node:child_process";
import {weftBin} from "./paths.js";

export type RunResult = {code: number | null, stdout: string, stderr: string};

/** Runs the built `weft` command as a user would and collects its output. */
export function weft(args: string[], env: Record<string, string> = {}): Promise<RunResult> {
    return new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [weftBin, ...args], {env: {...process.env, ...env}, stdio: ["ignore", "pipe", "pipe"]});
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (chunk) => (stdout += chunk));
        child.stderr.on("data", (chunk) => (stderr += chunk));
        child.on("error", reject);
        child.on("close", (code) => resolve({code, stdout, stderr}));
    });
}
