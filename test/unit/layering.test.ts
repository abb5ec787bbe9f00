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
    {name: "the contract may import zod", file: "main/contract/x.ts", code: `import {z} from "zod";\nexport const s = z.string();\n`, allowed: true}
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

    test("the real tree keeps its layers", async () => {
        const results = await eslint.lintFiles(["main", "renderer"]);
        assert.ok(results.length > 0, "ESLint found no files under main/ and renderer/");
        const violations = results.flatMap((result) => result.messages
            .filter((message) => message.ruleId === "no-restricted-imports")
            .map((message) => `${path.relative(repoRoot, result.filePath)}:${message.line}: ${message.message}`));
        assert.deepEqual(violations, []);
    });
});
