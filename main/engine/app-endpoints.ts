import {
    type CacheOverview, type Conversation, type ConversationSummary, type DownloadEvent, EngineError, type FolderInfo, type Hardware, type HostEvent,
    type ModelDetails, type ModelInfo, type OpenedDocument, type SettingsView, type StoredTurn, type UserSettings
} from "../contract/index.js";
import {cacheOverview} from "./cache-overview.js";
import {ConversationStore} from "./conversations.js";
import {openLibraryDocument, resolveLibraryDocument} from "./documents.js";
import type {DownloadProgress} from "./download.js";
import {describeHardware} from "./hardware.js";
import {modelDetails} from "./model-details.js";
import type {ModelHost} from "./model-host.js";
import type {ModelRegistry} from "./model-registry.js";
import {downloadEvents} from "./model-downloads.js";
import type {Settings} from "./settings.js";
import {settingsView} from "./user-settings.js";

/**
 * The desktop app's endpoints (conversations, the settings view, documents, the cache overview, the models view,
 * downloads), each delegating to its own service. Engine extends this, so its facade keeps to the engine's own work.
 */
export abstract class AppEndpoints {
    protected readonly conversations: ConversationStore;

    protected constructor(public readonly dataDir: string, public readonly threads: number,
        /** The settings this run started with: budgets, threads and GPU layers apply from the next start. */
        protected readonly startedWith: Settings) {
        this.conversations = new ConversationStore(dataDir);
    }

    protected abstract readonly host: ModelHost;
    protected abstract readonly registry: ModelRegistry;
    protected abstract settings: Settings;
    protected abstract updateSettings(patch: Partial<Settings>): Promise<void>;
    public abstract listFolders(): Promise<FolderInfo[]>;
    public abstract pullModel(uri: string, options?: {onProgress?: (progress: DownloadProgress) => void, signal?: AbortSignal}): Promise<ModelInfo>;

    public listConversations(): Promise<ConversationSummary[]> {
        return this.conversations.list();
    }

    public getConversation(input: {id: string}): Promise<Conversation> {
        return this.conversations.get(input.id);
    }

    public createConversation(input: {title?: string}): Promise<Conversation> {
        return this.conversations.create(input.title);
    }

    public renameConversation(input: {id: string, title: string}): Promise<ConversationSummary> {
        return this.conversations.rename(input.id, input.title);
    }

    public deleteConversation(input: {id: string}): Promise<{removed: boolean}> {
        return this.conversations.remove(input.id);
    }

    public appendTurn(input: {id: string, turn: StoredTurn}): Promise<ConversationSummary> {
        return this.conversations.appendTurn(input.id, input.turn);
    }

    public async getSettings(): Promise<SettingsView> {
        return settingsView(this.settings, this.startedWith, this.dataDir);
    }

    public async changeSettings(patch: Partial<UserSettings>): Promise<SettingsView> {
        await this.updateSettings(patch);
        return this.getSettings();
    }

    public async getCacheOverview(): Promise<CacheOverview> {
        return cacheOverview((await this.host.chunkCache()).stats(), await this.host.residentStats());
    }

    public async openDocument(input: {path: string}): Promise<OpenedDocument> {
        return openLibraryDocument(input.path, (await this.listFolders()).map((folder) => folder.path));
    }

    public async resolveDocument(input: {path: string}): Promise<{path: string}> {
        return {path: await resolveLibraryDocument(input.path, (await this.listFolders()).map((folder) => folder.path))};
    }

    /** Only the desktop shell has a system viewer to hand documents to. */
    public async showInSystemViewer(): Promise<{opened: boolean}> {
        throw new EngineError("bad_request", "opening documents in the system viewer needs the desktop app");
    }

    public listModelDetails(): Promise<ModelDetails[]> {
        return modelDetails(this.registry.list());
    }

    public async getHardware(): Promise<Hardware> {
        return describeHardware(await this.host.llama(), this.threads);
    }

    /** The desktop shell answers this with its native picker; here there is none. */
    public async pickFolder(): Promise<{path: string | null}> {
        throw new EngineError("bad_request", "there is no folder picker here: type the folder's path");
    }

    /** Hosting the engine in-process (serve, CLI), it runs until the client stops watching. */
    public async* watchHost(_input: Record<string, never>, signal: AbortSignal): AsyncGenerator<HostEvent> {
        yield {type: "state", state: "running"};
        if (!signal.aborted)
            await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), {once: true}));
        yield {type: "done"};
    }

    public downloadModel(input: {source: string}, signal: AbortSignal): AsyncGenerator<DownloadEvent> {
        return downloadEvents(input.source, signal, (source, options) => this.pullModel(source, options));
    }

}
