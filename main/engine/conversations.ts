import {randomUUID} from "node:crypto";
import {readdir, rm} from "node:fs/promises";
import path from "node:path";
import {Conversation, type ConversationSummary, EngineError, type StoredTurn} from "../contract/index.js";
import {readJsonOr, writeJsonAtomic} from "./json-file.js";

const untitled = "New chat";
const titleLength = 60;

/** "What is X, and why?" titles its conversation, cut at a word near 60 characters. */
export function titleFrom(question: string): string {
    const flat = question.replace(/\s+/g, " ").trim();
    if (flat.length <= titleLength)
        return flat;
    const cut = flat.slice(0, titleLength);
    const space = cut.lastIndexOf(" ");
    return `${space > titleLength / 2 ? cut.slice(0, space) : cut}…`;
}

/**
 * Conversations kept in `<data>/conversations/<id>.json`, one file each, written atomically: a crash loses at most
 * the turn being written, and a damaged file is set aside (by readJsonOr) without touching the others.
 * Writes to one conversation run one after another.
 */
export class ConversationStore {
    private readonly queues = new Map<string, Promise<unknown>>();

    public constructor(private readonly dataDir: string) {}

    private get dir(): string {
        return path.join(this.dataDir, "conversations");
    }

    private fileOf(id: string): string {
        return path.join(this.dir, `${id}.json`);
    }

    public async list(): Promise<ConversationSummary[]> {
        let names: string[];
        try {
            names = await readdir(this.dir);
        } catch (error) {
            if ((error as NodeJS.ErrnoException).code === "ENOENT")
                return [];
            throw error;
        }
        const found = await Promise.all(names.filter((name) => /^[a-z0-9-]+\.json$/.test(name))
            .map((name) => this.read(name.slice(0, -".json".length))));
        return found
            .filter((conversation): conversation is Conversation => conversation !== null)
            .map(({turns: _turns, ...summary}) => summary)
            .sort((a, b) => b.updatedAt.localeCompare(a.updatedAt));
    }

    public async get(id: string): Promise<Conversation> {
        const conversation = await this.read(id);
        if (conversation === null)
            throw new EngineError("not_found", `no conversation with id "${id}"`);
        return conversation;
    }

    public async create(title?: string): Promise<Conversation> {
        const now = new Date().toISOString();
        const conversation: Conversation = {
            id: randomUUID(), title: title ?? untitled, titledByUser: title !== undefined, createdAt: now, updatedAt: now, turnCount: 0, turns: []
        };
        await writeJsonAtomic(this.fileOf(conversation.id), conversation);
        return conversation;
    }

    public rename(id: string, title: string): Promise<ConversationSummary> {
        return this.update(id, (conversation) => ({...conversation, title, titledByUser: true}));
    }

    public appendTurn(id: string, turn: StoredTurn): Promise<ConversationSummary> {
        return this.update(id, (conversation) => ({
            ...conversation,
            title: conversation.titledByUser || conversation.turnCount > 0 ? conversation.title : titleFrom(turn.question),
            turns: [...conversation.turns, turn],
            turnCount: conversation.turnCount + 1
        }));
    }

    public async remove(id: string): Promise<{removed: boolean}> {
        return this.serialized(id, async () => {
            const existed = (await this.read(id)) !== null;
            await rm(this.fileOf(id), {force: true});
            return {removed: existed};
        });
    }

    private async read(id: string): Promise<Conversation | null> {
        const missing = {id: "", title: "", titledByUser: false, createdAt: "", updatedAt: "", turnCount: 0, turns: []};
        const conversation = await readJsonOr(this.fileOf(id), Conversation, missing);
        return conversation.id === id ? conversation : null;
    }

    private update(id: string, change: (conversation: Conversation) => Conversation): Promise<ConversationSummary> {
        return this.serialized(id, async () => {
            const changed = {...change(await this.get(id)), updatedAt: new Date().toISOString()};
            await writeJsonAtomic(this.fileOf(id), Conversation.parse(changed));
            const {turns: _turns, ...summary} = changed;
            return summary;
        });
    }

    private serialized<T>(id: string, work: () => Promise<T>): Promise<T> {
        const previous = this.queues.get(id) ?? Promise.resolve();
        const next = previous.catch(() => {}).then(work);
        this.queues.set(id, next);
        void next.finally(() => {
            if (this.queues.get(id) === next)
                this.queues.delete(id);
        }).catch(() => {});
        return next;
    }
}
