// Runs one benchmark: `npm run bench -- NAME [--json] [flags]` runs bench/NAME.bench.ts through tsx.
// With --json, use `npm run -s bench -- ...` so npm's own banner stays off stdout.
import {spawn} from "node:child_process";
import {mkdtempSync, readdirSync, rmSync} from "node:fs";
import os from "node:os";
import path from "node:path";
import {fileURLToPath} from "node:url";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const benchDir = path.join(root, "bench");
const available = readdirSync(benchDir).filter((name) => name.endsWith(".bench.ts")).map((name) => name.slice(0, -".bench.ts".length)).sort();
const [name, ...rest] = process.argv.slice(2);

if (name == null || !available.includes(name)) {
    if (name != null)
        console.error(`unknown benchmark "${name}"`);
    console.error(`usage: npm run bench -- NAME [--json] [flags]\navailable: ${available.join(", ")}`);
    process.exit(2);
}

// The benchmark makes its corpora and stores under here; removing it from out here also covers a crash or a kill.
const tmp = mkdtempSync(path.join(os.tmpdir(), "weft-bench-"));
const child = spawn("node", ["--import", "tsx", path.join(benchDir, `${name}.bench.ts`), ...rest], {
    cwd: root,
    stdio: "inherit",
    // Benchmarks on 2 cores must pin llama.cpp threads, as the tests do.
    env: {...process.env, WEFT_THREADS: process.env.WEFT_THREADS ?? "1", WEFT_BENCH_TMP: tmp}
});
// Ctrl-C reaches the child too (same process group); wait for it to clean up and exit rather than dying first.
for (const signal of ["SIGINT", "SIGTERM"])
    process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => {
    rmSync(tmp, {recursive: true, force: true});
    if (signal != null)
        console.error(`bench ${name} ended by ${signal}`);
    process.exit(code ?? 1);
});
