// The set-up most browser tests share: a data folder with a model registered, a documents folder, `weft serve` on them
// and Chromium; and its tear-down.
import {mkdtemp, rm} from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type {Browser} from "playwright-core";
import {launchChromium, registerModel, startServe, type RunningServer} from "./serve.js";

export type ServedApp = {dataDir: string, docsDir: string, server: RunningServer, browser: Browser};

/** Starts it all; whatever started is stopped and removed again when a later step fails. */
export async function startServedApp(modelPath: string, writeDocuments: (folder: string) => Promise<void>): Promise<ServedApp> {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "weft-e2e-"));
    const docsDir = await mkdtemp(path.join(os.tmpdir(), "weft-e2e-docs-"));
    let server: RunningServer | undefined;
    try {
        await writeDocuments(docsDir);
        await registerModel(dataDir, modelPath);
        server = await startServe(dataDir);
        return {dataDir, docsDir, server, browser: await launchChromium()};
    } catch (error) {
        await stopServedApp({server, dataDir, docsDir});
        throw error;
    }
}

/** Closes the browser, stops the server and removes both folders; any of them may be missing. */
export async function stopServedApp(app: Partial<ServedApp>): Promise<void> {
    await app.browser?.close();
    await app.server?.stop();
    for (const dir of [app.dataDir, app.docsDir])
        if (dir != null && dir !== "")
            await rm(dir, {recursive: true, force: true});
}
