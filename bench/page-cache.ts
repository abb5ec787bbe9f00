// The kernel's page cache for a benchmark's cold rows: evict one folder's files (not the whole cache: a running app
// keeps its model's pages), and check how much of them is still cached, so a cold row says whether it read the disk.
//
// Every command runs in one helper shell started before the model loads (`PageCacheTools.start`), never in a child of
// the benchmark's process started between runs: spawning forks the process, and fork write-protects every page of the
// parent's memory, so the question after it took a page fault on each first write. llama_state_seq_set_data then took
// 27 ms instead of 10.5 for 60 MB of KV (a warm question 25 ms longer, ad hoc, session 14): a cost no running app pays.
import {type ChildProcessWithoutNullStreams, spawn} from "node:child_process";
import {readdir, stat} from "node:fs/promises";
import path from "node:path";

async function filesUnder(dir: string): Promise<string[]> {
    const entries = await readdir(dir, {recursive: true, withFileTypes: true}).catch(() => []);
    return entries.filter((entry) => entry.isFile()).map((entry) => path.join(entry.parentPath, entry.name));
}

const quoted = (text: string) => `'${text.replaceAll("'", "'\\''")}'`;
const doneMark = "__weft_page_cache_done__";

export class PageCacheTools {
    private output = "";
    private waiting: ((output: string, status: number) => void) | null = null;
    private queue: Promise<unknown> = Promise.resolve();
    private exited = false;

    private constructor(private readonly shell: ChildProcessWithoutNullStreams) {
        shell.stdout.setEncoding("utf8");
        shell.stdout.on("data", (data: string) => {
            this.output += data;
            const at = this.output.indexOf(doneMark);
            const end = this.output.indexOf("\n", at);
            if (at < 0 || end < 0 || this.waiting == null)
                return;
            const status = Number(this.output.slice(at + doneMark.length, end));
            const text = this.output.slice(0, at);
            this.output = this.output.slice(end + 1);
            const waiting = this.waiting;
            this.waiting = null;
            waiting(text, status);
        });
        shell.on("exit", () => {
            this.exited = true;
            this.waiting?.("the helper shell exited", 127);
        });
    }

    /** Starts the helper shell: call it before the model loads, while the process is small. */
    static start(): PageCacheTools {
        const shell = spawn("sh", ["-c", `while IFS= read -r line; do eval "$line" 2>&1; echo "${doneMark}$?"; done`], {stdio: "pipe"});
        return new PageCacheTools(shell);
    }

    /** Runs one shell command line in the helper: its output (stderr too) and exit status. */
    private run(line: string): Promise<{output: string, status: number}> {
        const next = this.queue.then(() => new Promise<{output: string, status: number}>((resolve) => {
            if (this.exited)
                return resolve({output: "the helper shell exited", status: 127});
            this.waiting = (output, status) => resolve({output, status});
            this.shell.stdin.write(`${line}\n`);
        }));
        this.queue = next;
        return next;
    }

    /**
     * Writes back and evicts every file under `dir` from the page cache (`dd iflag=nocache count=0`: the whole file's
     * pages, through posix_fadvise DONTNEED). Returns null, or why it could not (the files then read from memory).
     */
    async evict(dir: string): Promise<string | null> {
        const files = await filesUnder(dir);
        const {output, status} = await this.run(["sync", ...files.map((file) => `dd if=${quoted(file)} iflag=nocache count=0 status=none`)].join(" && "));
        return status === 0 ? null : output.trim().split("\n")[0] || `exit status ${status}`;
    }

    /** Writes back and drops the whole page cache (root only); null, or why it could not. */
    async dropAll(): Promise<string | null> {
        const {output, status} = await this.run("sync && echo 3 > /proc/sys/vm/drop_caches");
        return status === 0 ? null : output.trim().split("\n")[0] || `exit status ${status}`;
    }

    /** Bytes of the files under `dir` and how many of them the page cache holds (util-linux fincore; null where it is missing). */
    async residency(dir: string): Promise<{fileBytes: number, cachedBytes: number | null}> {
        const files = await filesUnder(dir);
        if (files.length === 0)
            return {fileBytes: 0, cachedBytes: 0};
        let fileBytes = 0;
        for (const file of files)
            fileBytes += (await stat(file).catch(() => ({size: 0}))).size;
        const {output, status} = await this.run(`fincore --bytes --noheadings --raw --output RES ${files.map(quoted).join(" ")}`);
        if (status !== 0)
            return {fileBytes, cachedBytes: null};
        return {fileBytes, cachedBytes: output.trim().split("\n").reduce((sum, line) => sum + (Number(line.trim()) || 0), 0)};
    }

    /** The filesystem type of `dir` (tmpfs would mean the "disk" is memory), from stat -f. */
    async filesystemOf(dir: string): Promise<string> {
        const {output, status} = await this.run(`stat -f -c %T ${quoted(dir)}`);
        return status === 0 ? output.trim() : "unknown";
    }

    close(): void {
        this.shell.stdin.end();
    }
}
