import type {StateCreator} from "zustand/vanilla";
import type {
    AnswerStats, CacheStats, Citation, EngineErrorShape, EngineStatus, ModelInfo
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
    models: ModelInfo[];
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

export type ChatSlice = {
    turns: Turn[];
    /** The turn whose answer is streaming, if any. */
    activeTurnId: number | null;
    /** Sends a question; false when it cannot be sent now (empty, or an answer is still streaming). */
    ask(question: string): boolean;
    cancel(): void;
    clearChat(): void;
};

export type AppState = ConnectionSlice & ModelsSlice & ChatSlice;

export type SliceCreator<T> = StateCreator<AppState, [], [], T>;
