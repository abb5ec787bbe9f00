// Runs the test tiers with Node's test runner: unit (no model), model (tiny GGUF, one at a time), e2e (Chromium).
// `npm test` runs all three after a build; `npm test -- unit` (or model, e2e) runs one tier.
import {spawnSync} from "node:child_process";
import {readdirSync, statSync} from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const allTiers = ["unit", "model", "e2e"];
const args = process.argv.slice(2);
const tiers = args.filter((arg) => allTiers.includes(arg));
const selected = tiers.length > 0 ? tiers : allTiers;

function findTests(dir) {
    const found = [];
    for (const entry of readdirSync(dir)) {
        const full = path.join(dir, entry);
        if (statSync(full).isDirectory())
            found.push(...findTests(full));
        else if (entry.endsWith(".test.ts"))
            found.push(full);
    }
    return found.sort();
}

function run(command, commandArgs, env = {}) {
    const result = spawnSync(command, commandArgs, {cwd: root, stdio: "inherit", env: {...process.env, ...env}});
    if (result.status !== 0) {
        console.error(`\n${command} ${commandArgs.join(" ")} failed (exit ${result.status ?? result.signal})`);
        process.exit(result.status ?? 1);
    }
}

if (!args.includes("--no-build")) {
    run("node", ["scripts/build.mjs"]);
    if (tiers.length === 0) {
        run("npx", ["--no", "--", "tsc", "-p", "tsconfig.node.json"]);
        run("npx", ["--no", "--", "tsc", "-p", "tsconfig.renderer.json"]);
        run("npx", ["--no", "--", "eslint", "."]);
    }
}

const files = selected.flatMap((tier) => findTests(path.join(root, "test", tier)));
// Models and Chromium share 2 cores here: one test file at a time keeps thread counts honest.
run("node", ["--import", "tsx", "--test", "--test-concurrency=1", "--test-reporter=spec", ...files], {
    WEFT_THREADS: process.env.WEFT_THREADS ?? "1"
});
