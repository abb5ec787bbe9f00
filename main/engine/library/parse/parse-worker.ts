// The parse worker's entry: parses the files the ingest sends, one at a time, under the heap limit it was started with.
import {parentPort} from "node:worker_threads";
import type {ParseOptions} from "../types.js";
import {parseDocument} from "./index.js";

parentPort?.on("message", (job: {id: number, filePath: string, options: ParseOptions}) => {
    // The file's time limit starts now, not while a fresh worker was still loading its modules.
    parentPort?.postMessage({id: job.id, started: true});
    void parseDocument(job.filePath, job.options).then((outcome) => parentPort?.postMessage({id: job.id, outcome}));
});
