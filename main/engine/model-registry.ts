import path from "node:path";
import {z} from "zod";
import {EngineError, ModelInfo} from "../contract/index.js";
import {DataDirLock, type LockWait} from "./data-lock.js";
import {inspectGguf} from "./gguf-check.js";
import {readJsonOr, writeJsonAtomic} from "./json-file.js";

const RegistryFile = z.object({version: z.literal(1), models: z.array(ModelInfo)});

/**
 * The models the user has added, kept as `models.json` in the data dir. Model files stay where they are. Changes are
 * read-modify-written under the data folder's lock, so two processes sharing the folder never erase each other's.
 */
export class ModelRegistry {
    /** This process's registry changes, in order (see change). */
    private changes: Promise<unknown> = Promise.resolve();

    private constructor(private readonly dataDir: string, private readonly filePath: string, private models: ModelInfo[],
        private readonly lockWait: LockWait) {}

    public static async open(dataDir: string, lockWait: LockWait = {}): Promise<ModelRegistry> {
        const filePath = path.join(dataDir, "models.json");
        const registry = new ModelRegistry(dataDir, filePath, [], lockWait);
        await registry.refresh();
        return registry;
    }

    /** Re-reads the file (another process may have changed it). */
    public async refresh(): Promise<void> {
        this.models = (await readJsonOr(this.filePath, RegistryFile, {version: 1, models: []})).models;
    }

    public list(): ModelInfo[] {
        return [...this.models];
    }

    public get(id: string): ModelInfo | undefined {
        return this.models.find((model) => model.id === id);
    }

    public require(id: string): ModelInfo {
        const model = this.get(id);
        if (model == null)
            throw new EngineError("not_found", `no model with id "${id}" (see \`weft models list\`)`);

        return model;
    }

    /** Adding the same file twice returns the existing entry, refreshed. */
    public async add(modelPath: string): Promise<ModelInfo> {
        const absolutePath = path.resolve(modelPath);
        const summary = await inspectGguf(absolutePath);
        return this.change(async () => this.addChecked(absolutePath, summary));
    }

    private async addChecked(absolutePath: string, summary: Awaited<ReturnType<typeof inspectGguf>>): Promise<ModelInfo> {
        const existing = this.models.find((model) => model.path === absolutePath);
        const info: ModelInfo = {
            id: existing?.id ?? this.freeId(absolutePath),
            // Converted files often carry only the architecture ("llama") as their name; the file name says more.
            name: summary.name != null && summary.name !== summary.architecture ? summary.name : path.basename(absolutePath).replace(/\.gguf$/i, ""),
            path: absolutePath,
            sizeBytes: summary.sizeBytes,
            architecture: summary.architecture,
            contextLength: summary.contextLength,
            hasChatTemplate: summary.hasChatTemplate,
            addedAt: existing?.addedAt ?? new Date().toISOString()
        };

        this.models = existing != null
            ? this.models.map((model) => (model === existing ? info : model))
            : [...this.models, info];
        return info;
    }

    public async remove(id: string): Promise<boolean> {
        return this.change(async () => {
            const before = this.models.length;
            this.models = this.models.filter((model) => model.id !== id);
            return this.models.length !== before;
        });
    }

    /**
     * Read, change and write the registry under the data folder's lock, one change after another in this process (the
     * lock is shared within a process: two changes refreshed together would each save without the other's).
     */
    private async change<T>(apply: () => Promise<T>): Promise<T> {
        const result = this.changes.then(() => DataDirLock.for(this.dataDir).hold(async () => {
            await this.refresh();
            const applied = await apply();
            await this.save();
            return applied;
        }, this.lockWait));
        this.changes = result.catch(() => undefined);
        return result;
    }

    private freeId(absolutePath: string): string {
        const base = path.basename(absolutePath).replace(/\.gguf$/i, "").toLowerCase()
            .replace(/[^a-z0-9.]+/g, "-").replace(/^-+|-+$/g, "") || "model";
        let id = base;
        for (let n = 2; this.models.some((model) => model.id === id); n++)
            id = `${base}-${n}`;

        return id;
    }

    private async save(): Promise<void> {
        await writeJsonAtomic(this.filePath, {version: 1, models: this.models});
    }
}
