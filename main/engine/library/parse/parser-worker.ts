import {Worker} from "node:worker_threads";
import type {ParseOptions, ParseOutcome} from "../types.js";
import {formatDuration} from "./failure.js";
import {defaultTimeoutMs} from "./index.js";

/** The V8 heap one file's parse may use; past it the worker is stopped and the file listed as an error. */
export const defaultParseHeapMb = 1024;

export type ParserWorkerOptions = {heapMb?: number};

type Job = {id: number, resolve: (outcome: ParseOutcome) => void, started: () => void};

/**
 * Runs `parseDocument` in a worker thread, one file at a time: a parser that runs out of memory, loops or takes
 * quadratic time costs its file only. The worker's heap is capped (resourceLimits), each file has a wall-clock limit
 * after which the worker is terminated, and a dead worker is replaced for the next file. The engine's thread stays free,
 * so Ctrl+C and questions are answered meanwhile.
 */
export class ParserWorker {
    private worker: Worker | null = null;
    private job: Job | null = null;
    private nextId = 1;
    private readonly heapMb: number;

    public constructor(options: ParserWorkerOptions = {}) {
        this.heapMb = options.heapMb ?? defaultParseHeapMb;
    }

    public async parse(filePath: string, options: ParseOptions = {}): Promise<ParseOutcome> {
        const {signal, ...cloneable} = options;
        if (signal?.aborted)
            return {kind: "error", reason: "aborted"};

        const timeoutMs = options.timeoutMs ?? defaultTimeoutMs;
        const worker = this.start();
        const id = this.nextId++;
        return new Promise<ParseOutcome>((resolve) => {
            let timer: NodeJS.Timeout | undefined;
            const finish = (outcome: ParseOutcome) => {
                clearTimeout(timer);
                signal?.removeEventListener("abort", onAbort);
                if (this.job?.id === id)
                    this.job = null;

                resolve(outcome);
            };
            const stop = (reason: string) => {
                void this.kill();
                finish({kind: "error", reason});
            };
            // The worker's own timer cannot fire while a synchronous parser holds its thread; this one can.
            const started = () => {
                timer = setTimeout(() => stop(`timed out after ${formatDuration(timeoutMs)}`), timeoutMs + 1000);
            };
            const onAbort = () => stop("aborted");
            signal?.addEventListener("abort", onAbort, {once: true});
            this.job = {id, resolve: finish, started};
            worker.postMessage({id, filePath, options: cloneable});
        });
    }

    public async close(): Promise<void> {
        await this.kill();
    }

    private start(): Worker {
        if (this.worker != null)
            return this.worker;

        const here = import.meta.url;
        // The build emits parse-worker.js beside the bundle. Run from the sources (tsx, tests), the worker first
        // registers tsx itself: a worker does not inherit the parent's module hooks.
        const fromSources = here.endsWith(".ts");
        const entry = new URL(fromSources ? "./parse-worker.ts" : "./parse-worker.js", here);
        const script = fromSources
            ? `import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))}).then(({register}) => { register(); return import(${JSON.stringify(entry.href)}); });`
            : entry;
        const worker = new Worker(script, {
            eval: fromSources,
            resourceLimits: {maxOldGenerationSizeMb: this.heapMb, maxYoungGenerationSizeMb: Math.min(64, Math.max(8, this.heapMb / 8))},
            stdout: true,
            stderr: true
        });
        worker.unref();
        worker.on("message", (message: {id: number, started?: true, outcome?: ParseOutcome}) => {
            if (this.worker !== worker || this.job?.id !== message.id)
                return;

            if (message.outcome != null)
                this.job.resolve(message.outcome);
            else
                this.job.started();
        });
        // A worker stopped on purpose (time limit, abort) is already replaced: its last events concern no job.
        worker.on("error", (error: Error & {code?: string}) => {
            if (this.worker !== worker)
                return;

            const reason = error.code === "ERR_WORKER_OUT_OF_MEMORY"
                ? `ran out of memory while parsing (over the ${this.heapMb} MiB limit for one file)`
                : `the parser stopped: ${error.message}`;
            this.job?.resolve({kind: "error", reason});
        });
        worker.on("exit", () => {
            if (this.worker !== worker)
                return;

            this.worker = null;
            this.job?.resolve({kind: "error", reason: "the parser stopped unexpectedly"});
        });
        this.worker = worker;
        return worker;
    }

    private async kill(): Promise<void> {
        const worker = this.worker;
        this.worker = null;
        await worker?.terminate();
    }
}
