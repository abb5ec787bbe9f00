import type {EngineActions, LibrarySlice, SliceCreator} from "./types.js";

export const createLibrarySlice = (engine: () => EngineActions): SliceCreator<LibrarySlice> =>
    (set, get) => ({
        folders: [],
        foldersLoaded: false,
        libraryOpen: false,
        ingest: null,
        libraryError: null,
        confirmRemoveId: null,
        removingId: null,
        toggleLibrary: (open) => set((state) => ({libraryOpen: open ?? !state.libraryOpen, confirmRemoveId: null})),
        addFolder: (path) => {
            const trimmed = path.trim();
            if (trimmed === "" || get().ingest?.state === "running" || get().connection.kind !== "open")
                return false;
            return engine().ingestFolder(trimmed);
        },
        pickFolder: () => engine().pickFolder(),
        cancelIngest: () => {
            if (get().ingest?.state === "running")
                engine().cancelIngest();
        },
        requestRemoveFolder: (id) => set({confirmRemoveId: id}),
        confirmRemoveFolder: () => {
            const id = get().confirmRemoveId;
            if (id === null || get().removingId !== null)
                return;
            set({confirmRemoveId: null});
            void engine().removeFolder(id);
        },
        keepFolder: () => set({confirmRemoveId: null}),
        dismissIngest: () => {
            if (get().ingest?.state !== "running")
                set({ingest: null});
        },
        dismissLibraryError: () => set({libraryError: null})
    });
