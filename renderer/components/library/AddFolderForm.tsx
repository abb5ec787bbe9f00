import {useEffect, useRef, useState} from "react";
import {useApp} from "../../store/index.js";

/** A path typed or pasted; Add folder indexes it (or re-indexes it when it is in the library already). */
export function AddFolderForm() {
    const [path, setPath] = useState("");
    const input = useRef<HTMLInputElement>(null);
    const addFolder = useApp((state) => state.addFolder);
    const indexing = useApp((state) => state.ingest?.state === "running");
    const online = useApp((state) => state.connection.kind === "open");
    // The desktop app has a native picker; a browser tab cannot see the file system, so the path is typed there.
    const canBrowse = useApp((state) => state.transport === "ipc");
    const pickFolder = useApp((state) => state.pickFolder);

    // The panel opens for typing a path.
    useEffect(() => input.current?.focus(), []);

    const canAdd = online && !indexing && path.trim() !== "";
    return (
        <form
            className="add-folder"
            onSubmit={(event) => {
                event.preventDefault();
                if (canAdd && addFolder(path))
                    setPath("");
            }}
        >
            <div className="add-folder-label">
                <label htmlFor="folder-path-input">Folder path</label>
                {canBrowse && (
                    <button type="button" className="link-button" disabled={!online || indexing}
                        onClick={() => void pickFolder().then((picked) => {
                            if (picked !== null && addFolder(picked))
                                setPath("");
                        })}>
                        Browse…
                    </button>
                )}
            </div>
            <div className="add-folder-row">
                <input
                    ref={input}
                    id="folder-path-input"
                    data-testid="folder-path-input"
                    type="text"
                    value={path}
                    placeholder="/path/to/documents"
                    spellCheck={false}
                    autoComplete="off"
                    onChange={(event) => setPath(event.target.value)}
                />
                <button
                    type="submit"
                    className="primary-button"
                    data-testid="add-folder"
                    disabled={!canAdd}
                    title={indexing ? "Wait for the folder being indexed" : undefined}
                >
                    Add folder
                </button>
            </div>
            <p className="library-hint">Markdown, text, HTML, PDF, DOCX and code. Re-index picks up new, changed and deleted files.</p>
        </form>
    );
}
