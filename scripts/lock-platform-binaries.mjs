// The npm mirror on Weft's build machines lacks node-llama-cpp's macOS, Windows and riscv64 binary packages,
// so `npm install` there leaves them out of package-lock.json and `npm ci` then refuses the lock.
// This adds their entries back (they are optional and platform-gated, so npm only fetches them on their
// own platform). Run it after any `npm install` that rewrites the lock.
import {readFileSync, writeFileSync} from "node:fs";

const lockPath = new URL("../package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(lockPath, "utf8"));
const version = lock.packages["node_modules/node-llama-cpp"].version;
const platforms = {
    "linux-riscv64": ["linux", "riscv64"],
    "mac-arm64-metal": ["darwin", "arm64"],
    "mac-x64": ["darwin", "x64"],
    "win-arm64": ["win32", "arm64"],
    "win-x64": ["win32", "x64"],
    "win-x64-cuda": ["win32", "x64"],
    "win-x64-cuda-ext": ["win32", "x64"],
    "win-x64-vulkan": ["win32", "x64"]
};

let added = 0;
for (const [name, [os, cpu]] of Object.entries(platforms)) {
    const key = `node_modules/@node-llama-cpp/${name}`;
    if (lock.packages[key] != null)
        continue;

    lock.packages[key] = {
        version,
        resolved: `https://registry.npmjs.org/@node-llama-cpp/${name}/-/${name}-${version}.tgz`,
        cpu: [cpu],
        license: "MIT",
        optional: true,
        os: [os],
        engines: {node: ">=20.0.0"}
    };
    added++;
}

lock.packages = Object.fromEntries(Object.entries(lock.packages).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a.localeCompare(b))));
writeFileSync(lockPath, JSON.stringify(lock, null, 2) + "\n");
console.log(`added ${added} platform binary entries to package-lock.json`);
