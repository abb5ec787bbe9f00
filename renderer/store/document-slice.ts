import type {DocumentSlice, EngineActions, SliceCreator} from "./types.js";

export const createDocumentSlice = (engine: () => EngineActions): SliceCreator<DocumentSlice> =>
    (set) => ({
        viewer: null,
        openDocument: (citation) => engine().openDocument(citation),
        showInSystemViewer: (path) => void engine().showInSystemViewer(path),
        closeDocument: () => set({viewer: null})
    });
