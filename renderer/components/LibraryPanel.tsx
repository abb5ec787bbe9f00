import {useApp} from "../store/index.js";
import {AddFolderForm} from "./library/AddFolderForm.js";
import {CacheWarming} from "./library/CacheWarming.js";
import {FolderList} from "./library/FolderList.js";
import {IngestStatus} from "./library/IngestStatus.js";
import {LibraryError} from "./library/LibraryError.js";

/** The side panel: add a folder, watch it index, and see what is in the library (with what could not be read). */
export function LibraryPanel() {
    const open = useApp((state) => state.libraryOpen);
    const toggleLibrary = useApp((state) => state.toggleLibrary);
    const keepFolder = useApp((state) => state.keepFolder);
    const confirming = useApp((state) => state.confirmRemoveId !== null);

    if (!open)
        return null;

    return (
        <aside
            id="library-panel"
            className="library"
            data-testid="library-panel"
            aria-label="Library"
            onKeyDown={(event) => {
                // Escape here closes the panel (or the remove question) instead of stopping the answer.
                if (event.key !== "Escape" || event.nativeEvent.isComposing)
                    return;
                event.stopPropagation();
                if (confirming)
                    keepFolder();
                else
                    toggleLibrary(false);
            }}
        >
            <div className="library-head">
                <h2>Library</h2>
                <button type="button" className="icon-button" onClick={() => toggleLibrary(false)} aria-label="Close the library" title="Close (Ctrl+L)">
                    ×
                </button>
            </div>
            <AddFolderForm />
            <IngestStatus />
            <CacheWarming />
            <LibraryError />
            <FolderList />
        </aside>
    );
}
