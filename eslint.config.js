// Layering rules (the engine never imports electron; the renderer imports only the contract) live here,
// as VS Code's code-layering rule does, so a violation fails `npm run lint` and `npm test`.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

const nodeBuiltins = ["node:*", "fs", "path", "os", "child_process", "http", "net", "crypto", "worker_threads"];

const noElectron = {
    paths: [{name: "electron", message: "Only main/electron/ may import electron: the engine runs headless."}],
    patterns: [{group: ["**/electron/*", "**/electron"], message: "The engine may not depend on the Electron shell."}]
};

/** The engine's own layers, bottom up: native (the addon and the llama.cpp loader) <- kv <- blend <- the services. */
const engineServices = ["../*.js"];
function engineLayer(files, forbidden, message) {
    return {
        files,
        rules: {
            "no-restricted-imports": ["error", {paths: noElectron.paths, patterns: [...noElectron.patterns, {group: forbidden, message}]}]
        }
    };
}

export const layerRules = [
    {
        // Everything under main/ except the shell is headless and must run without Electron.
        files: ["main/**/*.ts"],
        ignores: ["main/electron/**"],
        rules: {
            "no-restricted-imports": ["error", {
                paths: [{name: "electron", message: "Only main/electron/ may import electron: the engine runs headless."}],
                patterns: [{group: ["**/electron/*", "**/electron"], message: "The engine may not depend on the Electron shell."}]
            }]
        }
    },
    engineLayer(["main/engine/native/**/*.ts"], ["../kv/*", "../blend/*", "../chat/*", "../library/*", ...engineServices],
        "main/engine/native/ (the addon and the llama.cpp loader) is the engine's bottom layer: it imports only itself and node-llama-cpp."),
    engineLayer(["main/engine/kv/**/*.ts"], ["../blend/*", "../chat/*", "../library/*", ...engineServices],
        "main/engine/kv/ (state blobs, .wkv files, chunk KV tiers) may import only itself and main/engine/native/."),
    engineLayer(["main/engine/blend/**/*.ts"], ["../chat/*", "../library/*", "../engine.js", "../model-host.js", "../library-host.js", "../cache-warming.js"],
        "main/engine/blend/ (the strategies) may import kv/, native/ and the prompt, not the services above it."),
    {
        // node-llama-cpp's private fields are read in one typed module, checked once at load (see native-addon.ts).
        files: ["main/**/*.ts"],
        ignores: ["main/engine/native/native-addon.ts"],
        rules: {
            "no-restricted-syntax": ["error", {
                selector: "MemberExpression[property.name=/^_(ctx|model|sequenceId|contextTokens|nextTokenIndex|backendContextDisposeGuard|backendModelDisposeGuard)$/]",
                message: "node-llama-cpp internals are touched in main/engine/native/native-addon.ts only."
            }]
        }
    },
    {
        // The contract is shared with the browser: zod and itself only.
        files: ["main/contract/**/*.ts"],
        rules: {
            "no-restricted-imports": ["error", {
                paths: [{name: "electron", message: "The contract is shared with the renderer: no electron."}],
                patterns: [
                    {group: nodeBuiltins, message: "The contract is shared with the renderer: no Node built-ins."},
                    {group: ["../*"], message: "The contract may import only itself and zod."}
                ]
            }]
        }
    },
    {
        // The renderer talks to the engine only through the contract.
        files: ["renderer/**/*.ts", "renderer/**/*.tsx"],
        rules: {
            "no-restricted-imports": ["error", {
                paths: [{name: "electron", message: "The renderer reaches Electron only through the preload's window.weft."}],
                patterns: [
                    {group: ["**/main/*", "!**/main/contract", "!**/main/contract/index.js"], message: "The renderer may import only main/contract from main/."},
                    {group: [...nodeBuiltins, "node-llama-cpp", "@lancedb/*", "ws"], message: "The renderer runs in a browser sandbox."}
                ]
            }]
        }
    }
];

export default tseslint.config(
    {ignores: ["dist/**", "release/**", "node_modules/**", "test/.tmp/**", "native/build/**", "**/*.d.ts"]},
    js.configs.recommended,
    ...tseslint.configs.recommended,
    {
        languageOptions: {ecmaVersion: 2023, sourceType: "module"},
        rules: {
            "@typescript-eslint/no-unused-vars": ["error", {argsIgnorePattern: "^_", varsIgnorePattern: "^_"}],
            "@typescript-eslint/no-explicit-any": "error",
            "no-constant-condition": ["error", {checkLoops: false}]
        }
    },
    {
        files: ["**/*.js", "**/*.mjs", "**/*.cjs"],
        languageOptions: {globals: {process: "readonly", console: "readonly", URL: "readonly"}}
    },
    ...layerRules
);
