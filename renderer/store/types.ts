import type {StateCreator} from "zustand/vanilla";
import type {
    AnswerStats, CacheStats, CacheWarmStatus, Citation, EngineErrorShape, EngineStatus, FolderInfo, IngestProgress, IngestSummary, ListedModel, Strategy
} from "../../main/contract/index.js";
import type {ConnectionState, TransportKind} from "../transport/connection.js";

/** What store actions ask of the engine; implemented by the bridge, the only code that talks to it. */
export interface EngineActions {
    refresh(): Promise<void>;
    selectModel(id: string): Promise<void>;
    addModel(path: string): Promise<boolean>;
    ask(question: string): void;
    cancel(): void;
    retryConnection(): void;
    loadFolders(): Promise<void>;
    /** Starts indexing `path` (a new folder, or one already in the library); false when one is already running. */
    ingestFolder(path: string): boolean;
    cancelIngest(): void;
    removeFolder(id: string): Promise<void>;
    pauseCacheWarm(): Promise<void>;
    resumeCacheWarm(): Promise<void>;
}

export type ConnectionSlice = {
    transport: TransportKind;
    connection: ConnectionState;
    status: EngineStatus | null;
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

export type AppState = ConnectionSlice & ModelsSlice & ChatSlice & LibrarySlice & CacheWarmSlice;

export type SliceCreator<T> = StateCreator<AppState, [], [], T>;
