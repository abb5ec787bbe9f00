// Runs one benchmark: `npm run bench -- NAME [--json] [flags]` runs bench/NAME.bench.ts through tsx.
// With --json, use `npm run -s bench -- ...` so npm's own banner stays off stdout.
import {spawnSync} from "node:child_process";
import {readdirSync} from "node:fs";
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

const result = spawnSync("node", ["--import", "tsx", path.join(benchDir, `${name}.bench.ts`), ...rest], {
    cwd: root,
    stdio: "inherit",
    // Benchmarks on 2 cores must pin llama.cpp threads, as the tests do.
    env: {...process.env, WEFT_THREADS: process.env.WEFT_THREADS ?? "1"}
});
process.exit(result.status ?? 1);
