import type {StateCreator} from "zustand/vanilla";
import type {
    AnswerStats, CacheOverview, CacheStats, CacheWarmStatus, Citation, ConversationSummary, DownloadProgress, EngineErrorShape, EngineStatus,
    FolderInfo, Hardware, IngestProgress, ModelDetails, IngestSummary, ListedModel, ModelInfo, OpenedDocument, SettingsView, Strategy, UserSettings
} from "../../main/contract/index.js";
import type {ConnectionState, TransportKind} from "../transport/connection.js";

export interface ModelsActions {
    refresh(): Promise<void>;
    selectModel(id: string): Promise<void>;
    addModel(path: string): Promise<boolean>;
    loadHardware(): Promise<void>;
}

export interface ChatActions {
    ask(question: string): void;
    cancel(): void;
}

export interface LibraryActions {
    /** The desktop app's native folder picker: the chosen path, or null (cancelled, or not available). */
    pickFolder(): Promise<string | null>;
    loadFolders(): Promise<void>;
    /** Starts indexing `path` (a new folder, or one already in the library); false when one is already running. */
    ingestFolder(path: string): boolean;
    cancelIngest(): void;
    removeFolder(id: string): Promise<void>;
}

export interface CacheWarmActions {
    pauseCacheWarm(): Promise<void>;
    resumeCacheWarm(): Promise<void>;
}

export interface ConversationActions {
    loadConversations(): Promise<void>;
    openConversation(id: string): Promise<void>;
    renameConversation(id: string, title: string): Promise<void>;
    deleteConversation(id: string): Promise<void>;
}

export interface SettingsActions {
    loadSettings(): Promise<void>;
    changeSettings(patch: Partial<UserSettings>): Promise<void>;
}

export interface CacheActions {
    loadCacheOverview(): Promise<void>;
}

export interface DocumentActions {
    openDocument(citation: Citation): void;
    showInSystemViewer(path: string): Promise<void>;
}

export interface DownloadActions {
    startDownload(source: string): void;
    cancelDownload(source: string): void;
}

/** What store actions ask of the engine; each slice's wiring (renderer/wiring/) implements its part. */
export type EngineActions = ModelsActions & ChatActions & LibraryActions & CacheWarmActions & ConversationActions & SettingsActions &
    CacheActions & DocumentActions & DownloadActions & {retryConnection(): void};

export type ConnectionSlice = {
    transport: TransportKind;
    connection: ConnectionState;
    status: EngineStatus | null;
    /** Why the engine is restarting (desktop app, after a crash); null while it runs. */
    engineState: string | null;
    /** The last failed request that is not tied to an answer, shown as a dismissible banner. */
    notice: {id: number; message: string} | null;
    retryConnection(): void;
    dismissNotice(): void;
};

export type ModelsSlice = {
    models: ListedModel[];
    modelsLoaded: boolean;
    activeModelId: string | null;
    /** A select or add is in flight. */
    modelBusy: boolean;
    selectModel(id: string): void;
    addModel(path: string): Promise<boolean>;
    refresh(): void;
    /** The backend and GPUs, read when the Models view opens. */
    hardware: Hardware | null;
    /** Quantization per model id, from the files' metadata (read when the Models view opens). */
    modelDetails: Record<string, ModelDetails>;
    loadHardware(): void;
};

export type TurnStatus = "waiting" | "streaming" | "done" | "cancelled" | "error";

export type Turn = {
    id: number;
    question: string;
    answer: string;
    status: TurnStatus;
    cancelRequested: boolean;
    citations: Citation[];
    retrievalMs: number | null;
    cacheStats: CacheStats | null;
    stats: AnswerStats | null;
    error: EngineErrorShape | null;
};

/** "auto" lets the engine choose (exact prefix reuse today); the others are sent as the question's strategy. */
export type StrategyChoice = "auto" | Strategy;

export type ChatSlice = {
    turns: Turn[];
    strategy: StrategyChoice;
    /** Share of reused chunk tokens that hkvd and chunk-head recompute. */
    ratio: number;
    setStrategy(strategy: StrategyChoice, ratio?: number): void;
    /** The turn whose answer is streaming, if any. */
    activeTurnId: number | null;
    /** Sends a question; false when it cannot be sent now (empty, or an answer is still streaming). */
    ask(question: string): boolean;
    cancel(): void;
    clearChat(): void;
};

export type IngestState = "running" | "done" | "cancelled" | "error";

/** The current (or last) indexing run, as the library panel shows it. */
export type Ingest = {
    /** Counts up with every run, so a view (or a test) can tell one run's end from the next one's. */
    run: number;
    /** The path as it was asked for; the engine resolves it (the summary's `folder` is the resolved one). */
    path: string;
    state: IngestState;
    progress: IngestProgress | null;
    summary: IngestSummary | null;
    error: EngineErrorShape | null;
    cancelRequested: boolean;
};

export type LibrarySlice = {
    folders: FolderInfo[];
    foldersLoaded: boolean;
    libraryOpen: boolean;
    ingest: Ingest | null;
    /** A failed library request (listing, removing) or ingest, shown inline in the panel. */
    libraryError: string | null;
    /** The folder whose Remove was clicked once and waits for confirmation. */
    confirmRemoveId: string | null;
    /** A remove is in flight. */
    removingId: string | null;
    toggleLibrary(open?: boolean): void;
    /** Adds (or re-indexes) a folder; false when it cannot start now (empty path, offline, or already indexing). */
    addFolder(path: string): boolean;
    /** The desktop app's folder picker; null when cancelled. */
    pickFolder(): Promise<string | null>;
    cancelIngest(): void;
    /** Asks for confirmation first: the folder is removed only by confirmRemoveFolder. */
    requestRemoveFolder(id: string): void;
    confirmRemoveFolder(): void;
    keepFolder(): void;
    dismissIngest(): void;
    dismissLibraryError(): void;
};

/** The engine computing chunk KV caches in the background (after ingests and model changes), as the library panel shows it. */
export type CacheWarmSlice = {
    /** The latest status the engine pushed (watchCacheWarm) or reported (getStatus); null until the first one. */
    cacheWarm: CacheWarmStatus | null;
    /** A pause or resume is in flight. */
    cacheWarmBusy: boolean;
    pauseCacheWarm(): void;
    resumeCacheWarm(): void;
};

export type ViewName = "chat" | "models" | "cache" | "settings";

/** Which main view shows; the library panel and the conversation list stay beside it. */
export type ViewSlice = {
    view: ViewName;
    setView(view: ViewName): void;
};

export type ConversationsSlice = {
    conversations: ConversationSummary[];
    conversationsLoaded: boolean;
    /** The conversation on screen; null for a new chat not yet saved (it is saved with its first answer). */
    conversationId: string | null;
    /** The conversation whose title is being edited. */
    renamingId: string | null;
    newChat(): void;
    openConversation(id: string): void;
    startRename(id: string | null): void;
    renameConversation(id: string, title: string): void;
    deleteConversation(id: string): void;
};

export type SettingsSlice = {
    settingsView: SettingsView | null;
    settingsSaving: boolean;
    changeSettings(patch: Partial<UserSettings>): void;
};

export type CacheSlice = {
    cacheOverview: CacheOverview | null;
    loadCacheOverview(): void;
};

export type DocumentViewer = {
    citation: Citation;
    document: OpenedDocument | null;
    error: string | null;
};

export type DocumentSlice = {
    viewer: DocumentViewer | null;
    openDocument(citation: Citation): void;
    /** Desktop app only: hands the document to the system's viewer. */
    showInSystemViewer(path: string): void;
    closeDocument(): void;
};

export type DownloadState = "running" | "done" | "cancelled" | "error";

export type Download = {
    source: string;
    state: DownloadState;
    progress: DownloadProgress | null;
    error: string | null;
    model: ModelInfo | null;
};

export type DownloadsSlice = {
    /** Newest first, one per source: downloading a source again (a resume) replaces its entry. */
    downloads: Download[];
    startDownload(source: string): void;
    cancelDownload(source: string): void;
};

export type AppState = ConnectionSlice & ModelsSlice & ChatSlice & LibrarySlice & CacheWarmSlice & ViewSlice & ConversationsSlice & SettingsSlice &
    CacheSlice & DocumentSlice & DownloadsSlice;

export type SliceCreator<T> = StateCreator<AppState, [], [], T>;
