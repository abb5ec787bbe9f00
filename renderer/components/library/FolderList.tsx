import {useApp} from "../../store/index.js";
import {FolderRow} from "./FolderRow.js";

/** The folders in the library, each with its counts, problems and actions. */
export function FolderList() {
    const folders = useApp((state) => state.folders);
    const loaded = useApp((state) => state.foldersLoaded);

    if (!loaded)
        return <p className="library-empty">Loading the library…</p>;
    if (folders.length === 0)
        return <p className="library-empty" data-testid="library-empty">No folders yet. Add a folder of documents to ask questions about it.</p>;

    const sorted = [...folders].sort((a, b) => a.path.localeCompare(b.path));
    return (
        <ul className="folders" aria-label="Folders">
            {sorted.map((folder) => <FolderRow key={folder.id} folder={folder} />)}
        </ul>
    );
}
