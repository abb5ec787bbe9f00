// Run as a child process by ingest.test.ts: ingests a folder and prints one line per committed progress step,
// so the test can kill it with SIGKILL partway through.
import {Engine} from "../../../main/engine/engine.js";

const [dataDir, folder] = process.argv.slice(2);
const engine = await Engine.open({dataDir: dataDir!, threads: 1, gpu: false});
for await (const event of engine.ingestFolder({path: folder!}, new AbortController().signal)) {
    if (event.type === "progress")
        console.log(`progress ${event.progress.filesDone}`);
    else
        console.log(JSON.stringify(event));
}
await engine.close();
process.exit(0);
