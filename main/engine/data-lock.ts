import {randomBytes} from "node:crypto";
import {link, mkdir, open, readFile, rename, rm, stat, utimes} from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {EngineError} from "../contract/index.js";

export type LockOwner = {pid: number, host: string, command: string, since: string, token: string};

export type LockWait = {
    /** How long to wait for another process before giving up with a `busy` error (default 10 minutes). */
    waitMs?: number;
    /** Called once when the lock is held elsewhere and this process starts waiting. */
    onWait?: (message: string) => void;
};

/** The holder refreshes the file's time this often; a lock not refreshed for `staleMs` was left by a dead process. */
const heartbeatMs = 5_000;
const staleMs = 30_000;
const pollMs = 150;

const locks = new Map<string, DataDirLock>();

/**
 * One writer per data folder across processes (the app, `serve` and CLI commands share a data folder). A lock file
 * made with O_EXCL names its holder; within a process the lock is shared (counted), since the process orders its
 * own writes. A lock whose process is gone (same host) or whose heartbeat stopped is taken over.
 */
export class DataDirLock {
    private held = 0;
    private owner: LockOwner | null = null;
    private heartbeat: NodeJS.Timeout | null = null;
    private acquiring: Promise<void> | null = null;
    private readonly filePath: string;

    private constructor(dataDir: string) {
        this.filePath = path.join(dataDir, "writer.lock");
    }

    public static for(dataDir: string): DataDirLock {
        const key = path.resolve(dataDir);
        let lock = locks.get(key);
        if (lock == null) {
            lock = new DataDirLock(key);
            locks.set(key, lock);
        }
        return lock;
    }

    /** Runs `task` while this process is the data folder's writer. */
    public async hold<T>(task: () => Promise<T>, wait: LockWait = {}): Promise<T> {
        await this.acquire(wait);
        try {
            return await task();
        } finally {
            await this.release();
        }
    }

    private async acquire(wait: LockWait): Promise<void> {
        if (this.held > 0) {
            this.held++;
            return;
        }

        this.acquiring ??= this.take(wait).finally(() => {
            this.acquiring = null;
        });
        await this.acquiring;
        this.held++;
    }

    private async take(wait: LockWait): Promise<void> {
        await mkdir(path.dirname(this.filePath), {recursive: true});
        const owner: LockOwner = {pid: process.pid, host: os.hostname(), command: describeCommand(), since: new Date().toISOString(),
            token: randomBytes(8).toString("hex")};
        const deadline = Date.now() + (wait.waitMs ?? 10 * 60_000);
        let told = false;
        for (;;) {
            if (await this.create(owner)) {
                this.owner = owner;
                this.heartbeat = setInterval(() => {
                    const now = new Date();
                    void utimes(this.filePath, now, now).catch(() => {});
                }, heartbeatMs);
                this.heartbeat.unref();
                return;
            }

            const current = await this.readHolder();
            if (current == null || await this.isStale(current.owner, current.mtimeMs)) {
                await this.breakStale(current?.owner ?? null);
                continue;
            }

            const message = `the library in ${path.dirname(this.filePath)} is in use by another Weft process ` +
                `(${current.owner.command}, pid ${current.owner.pid}, since ${current.owner.since})`;
            if (Date.now() >= deadline)
                throw new EngineError("busy", `${message}; try again when it has finished, or use that process`);

            if (!told) {
                told = true;
                wait.onWait?.(`waiting: ${message}`);
            }
            await new Promise((resolve) => setTimeout(resolve, pollMs));
        }
    }

    /**
     * Makes the lock file with its holder already in it: written under a private name, then linked into place (link
     * never overwrites). A lock made empty and filled afterwards could be read half-written by another process, judged
     * unreadable, hence stale, and broken while its holder was live: two writers.
     */
    private async create(owner: LockOwner): Promise<boolean> {
        const draft = `${this.filePath}.new-${process.pid}-${owner.token}`;
        const handle = await open(draft, "w");
        try {
            await handle.writeFile(JSON.stringify(owner));
        } finally {
            await handle.close();
        }
        try {
            await link(draft, this.filePath);
            return true;
        } catch (error) {
            if ((error as NodeJS.ErrnoException).code !== "EEXIST")
                throw error;
            return false;
        } finally {
            await rm(draft, {force: true});
        }
    }

    private async release(): Promise<void> {
        this.held--;
        if (this.held > 0)
            return;

        if (this.heartbeat != null)
            clearInterval(this.heartbeat);

        this.heartbeat = null;
        const mine = this.owner;
        this.owner = null;
        const current = await this.readHolder();
        if (mine != null && current?.owner.token === mine.token)
            await rm(this.filePath, {force: true});
    }

    private async readHolder(): Promise<{owner: LockOwner, mtimeMs: number} | null> {
        try {
            const [text, info] = await Promise.all([readFile(this.filePath, "utf8"), stat(this.filePath)]);
            return {owner: JSON.parse(text) as LockOwner, mtimeMs: info.mtimeMs};
        } catch {
            // Missing, or written by a process that died between creating and filling it (empty): both are free.
            return null;
        }
    }

    private async isStale(owner: LockOwner, mtimeMs: number): Promise<boolean> {
        if (owner.host === os.hostname() && !isAlive(owner.pid))
            return true;

        return Date.now() - mtimeMs > staleMs;
    }

    /**
     * Moves a stale lock aside (one rename wins when several processes find it), then checks that what moved is the
     * lock judged stale; a live lock moved by a race is put back with link(), which never overwrites.
     */
    private async breakStale(judged: LockOwner | null): Promise<void> {
        const aside = `${this.filePath}.stale-${process.pid}-${randomBytes(4).toString("hex")}`;
        try {
            await rename(this.filePath, aside);
        } catch {
            return;
        }

        try {
            const moved = JSON.parse(await readFile(aside, "utf8")) as LockOwner;
            if (judged != null && moved.token !== judged.token)
                await link(aside, this.filePath).catch(() => {});
        } catch {
            // An unreadable lock file is stale by definition.
        }
        await rm(aside, {force: true});
    }
}

function isAlive(pid: number): boolean {
    try {
        process.kill(pid, 0);
        return true;
    } catch (error) {
        return (error as NodeJS.ErrnoException).code === "EPERM";
    }
}

function describeCommand(): string {
    const args = process.argv.slice(1).map((arg) => path.basename(arg));
    const weft = args.findIndex((arg) => /^weft(\.js|\.ts)?$/.test(arg));
    return weft >= 0 ? ["weft", ...args.slice(weft + 1, weft + 2)].join(" ") : args.slice(0, 2).join(" ") || "weft";
}
