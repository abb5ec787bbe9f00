// Proves the layering rules in eslint.config.js fire: a rule that silently matches nothing would let the engine
// grow an Electron dependency or the renderer reach into the engine without anyone noticing.
import assert from "node:assert/strict";
import path from "node:path";
import {describe, test} from "node:test";
import {fileURLToPath} from "node:url";
import {ESLint} from "eslint";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const eslint = new ESLint({cwd: repoRoot});

/** The no-restricted-imports messages for `code` as if it lived at `file`; every one must be an error, not a warning. */
async function restrictedImports(code: string, file: string): Promise<string[]> {
    const [result] = await eslint.lintText(code, {filePath: path.join(repoRoot, file)});
    assert.ok(result != null, `ESLint returned no result for ${file}`);
    // A parse failure or an ignored path would make an "allowed" case pass without any rule running.
    assert.ok(!result.messages.some((message) => message.fatal || message.ruleId == null), `${file}: ${JSON.stringify(result.messages)}`);
    const restricted = result.messages.filter((message) => message.ruleId === "no-restricted-imports");
    assert.ok(restricted.every((message) => message.severity === 2), `${file}: a layering rule is only a warning`);
    return restricted.map((message) => message.message);
}

const cases: {name: string, file: string, code: string, allowed: boolean}[] = [
    {name: "the engine may not import electron", file: "main/engine/x.ts", code: `import {app} from "electron";\nexport const a = app;\n`, allowed: false},
    {name: "the engine may not import the shell", file: "main/engine/x.ts", code: `import {registerIpc} from "../electron/ipc.js";\nexport const r = registerIpc;\n`, allowed: false},
    {name: "the shell may import electron", file: "main/electron/x.ts", code: `import {app} from "electron";\nexport const a = app;\n`, allowed: true},
    {
        name: "the renderer may not import the engine", file: "renderer/x.ts",
        code: `import {Engine} from "../main/engine/engine.js";\nexport const e = Engine;\n`, allowed: false
    },
    {
        name: "the renderer may import the contract", file: "renderer/x.ts",
        code: `import {ChatEvent} from "../main/contract/index.js";\nexport const c = ChatEvent;\n`, allowed: true
    },
    {name: "the renderer may not import electron", file: "renderer/x.tsx", code: `import {ipcRenderer} from "electron";\nexport const i = ipcRenderer;\n`, allowed: false},
    {name: "the contract may not import Node built-ins", file: "main/contract/x.ts", code: `import fs from "node:fs";\nexport const f = fs;\n`, allowed: false},
    {name: "the contract may not import the engine", file: "main/contract/x.ts", code: `import {Engine} from "../engine/engine.js";\nexport const e = Engine;\n`, allowed: false},
    {name: "the contract may import zod", file: "main/contract/x.ts", code: `import {z} from "zod";\nexport const s = z.string();\n`, allowed: true},
    {name: "the native layer may not import the KV layer", file: "main/engine/native/x.ts", code: `import {ChunkKvCache} from "../kv/chunk-cache.js";\nexport const c = ChunkKvCache;\n`, allowed: false},
    {name: "the native layer may not import the engine", file: "main/engine/native/x.ts", code: `import {Engine} from "../engine.js";\nexport const e = Engine;\n`, allowed: false},
    {name: "the native layer still may not import electron", file: "main/engine/native/x.ts", code: `import {app} from "electron";\nexport const a = app;\n`, allowed: false},
    {name: "the KV layer may import the native layer", file: "main/engine/kv/x.ts", code: `import {loadNativeAddon} from "../native/native-addon.js";\nexport const l = loadNativeAddon;\n`, allowed: true},
    {name: "the KV layer may not import the strategies", file: "main/engine/kv/x.ts", code: `import {BlendSession} from "../blend/blend.js";\nexport const b = BlendSession;\n`, allowed: false},
    {name: "the strategies may import the KV layer", file: "main/engine/blend/x.ts", code: `import {ChunkKvCache} from "../kv/chunk-cache.js";\nexport const c = ChunkKvCache;\n`, allowed: true},
    {name: "the strategies may not import the model host", file: "main/engine/blend/x.ts", code: `import {ModelHost} from "../model-host.js";\nexport const m = ModelHost;\n`, allowed: false}
];

describe("layering rules", () => {
    for (const {name, file, code, allowed} of cases)
        test(name, async () => {
            const messages = await restrictedImports(code, file);
            if (allowed)
                assert.deepEqual(messages, []);
            else
                assert.ok(messages.length > 0, `expected a no-restricted-imports error in ${file}`);
        });

    test("node-llama-cpp internals are an error outside the native module, and allowed in it", async () => {
        const code = `export function f(context: object) {\n    return (context as {_ctx: unknown})._ctx;\n}\n`;
        const outside = await eslint.lintText(code, {filePath: path.join(repoRoot, "main/engine/blend/x.ts")});
        assert.ok(outside[0]!.messages.some((message) => message.ruleId === "no-restricted-syntax" && message.severity === 2),
            JSON.stringify(outside[0]!.messages));
        const inside = await eslint.lintText(code, {filePath: path.join(repoRoot, "main/engine/native/native-addon.ts")});
        assert.ok(!inside[0]!.messages.some((message) => message.ruleId === "no-restricted-syntax"), JSON.stringify(inside[0]!.messages));
    });

    test("the real tree keeps its layers", async () => {
        const results = await eslint.lintFiles(["main", "renderer"]);
        assert.ok(results.length > 0, "ESLint found no files under main/ and renderer/");
        const violations = results.flatMap((result) => result.messages
            .filter((message) => message.ruleId === "no-restricted-imports" || message.ruleId === "no-restricted-syntax")
            .map((message) => `${path.relative(repoRoot, result.filePath)}:${message.line}: ${message.message}`));
        assert.deepEqual(violations, []);
    });
});
