#!/usr/bin/env node
import {existsSync} from "node:fs";
import {fileURLToPath} from "node:url";

const entry = new URL("../dist/weft.js", import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
    console.error("weft: the build is missing (dist/weft.js). Run `npm run build` in the Weft folder first.");
    process.exit(1);
}
await import(entry.href);
