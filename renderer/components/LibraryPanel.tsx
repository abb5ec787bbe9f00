import {useEffect, useRef, useState} from "react";
import type {FileProblem, FolderInfo} from "../../main/contract/index.js";
import {useApp, type Ingest} from "../store/index.js";
import {baseName, formatCount, formatDateTime, formatMBps, formatMs, formatWhen, plural, relativePath} from "./format.js";

/** Paths compare equal with or without a trailing separator. */
function samePath(a: string, b: string): boolean {
    return a.replace(/[\\/]+$/, "") === b.replace(/[\\/]+$/, "");
}

function ingestTargets(ingest: Ingest | null, folder: FolderInfo): boolean {
    return ingest !== null && (samePath(ingest.path, folder.path) || (ingest.summary !== null && samePath(ingest.summary.folder, folder.path)));
}

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

function AddFolderForm() {
    const [path, setPath] = useState("");
    const input = useRef<HTMLInputElement>(null);
    const addFolder = useApp((state) => state.addFolder);
    const indexing = useApp((state) => state.ingest?.state === "running");
    const online = useApp((state) => state.connection.kind === "open");

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
            <label htmlFor="folder-path-input">Folder path</label>
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

function IngestStatus() {
    const ingest = useApp((state) => state.ingest);
    const cancelIngest = useApp((state) => state.cancelIngest);
    const dismissIngest = useApp((state) => state.dismissIngest);

    if (ingest === null)
        return null;

    const name = baseName(ingest.summary?.folder ?? ingest.path);
    const progress = ingest.progress;
    const fraction = progress !== null && progress.filesTotal > 0 ? progress.filesDone / progress.filesTotal : null;
    const dismiss = (
        <button type="button" className="link-button" onClick={dismissIngest} aria-label="Dismiss">Dismiss</button>
    );

    return (
        <section
            className="ingest"
            data-testid="ingest-progress"
            data-state={ingest.state}
            data-run={ingest.run}
            data-files-done={progress?.filesDone ?? 0}
            data-files-total={progress?.filesTotal ?? 0}
            aria-label="Indexing"
        >
            {ingest.state === "running" && (
                <>
                    <div className="ingest-title">
                        <span>Indexing <strong title={ingest.path}>{name}</strong></span>
                        <button
                            type="button"
                            className="stop-button small"
                            data-testid="cancel-ingest"
                            onClick={cancelIngest}
                            disabled={ingest.cancelRequested}
                        >
                            {ingest.cancelRequested ? "Cancelling…" : "Cancel"}
                        </button>
                    </div>
                    <div
                        className={`progress-track${fraction === null ? " indeterminate" : ""}`}
                        role="progressbar"
                        aria-label={`Indexing ${name}`}
                        aria-valuemin={0}
                        aria-valuemax={progress?.filesTotal ?? 0}
                        aria-valuenow={fraction === null ? undefined : progress!.filesDone}
                    >
                        <div className="progress-fill" style={{width: `${Math.round((fraction ?? 0) * 100)}%`}} />
                    </div>
                    <p className="ingest-numbers">
                        {progress === null || progress.filesTotal === 0 ? "Listing files…" : (
                            <>
                                {formatCount(progress.filesDone)} / {plural(progress.filesTotal, "file")}
                                {" · "}{plural(progress.chunks, "chunk")}
                                {" · "}{formatMBps(progress.bytesPerSecond)}
                            </>
                        )}
                    </p>
                    {progress?.currentPath != null && (
                        <p className="ingest-current" title={progress.currentPath} data-testid="ingest-current">
                            {baseName(progress.currentPath)}
                        </p>
                    )}
                </>
            )}
            {ingest.state === "done" && ingest.summary !== null && (
                <div className="ingest-title">
                    <span>
                        Indexed <strong title={ingest.summary.folder}>{name}</strong>: {plural(ingest.summary.files, "file")},{" "}
                        {plural(ingest.summary.chunks, "chunk")} in {formatMs(ingest.summary.elapsedMs)}
                        {ingest.summary.errors.length + ingest.summary.skipped.length > 0 && (
                            <span className="ingest-problems">
                                {" "}({[
                                    ingest.summary.errors.length > 0 ? plural(ingest.summary.errors.length, "error") : "",
                                    ingest.summary.skipped.length > 0 ? `${formatCount(ingest.summary.skipped.length)} skipped` : ""
                                ].filter((part) => part !== "").join(", ")})
                            </span>
                        )}
                    </span>
                    {dismiss}
                </div>
            )}
            {ingest.state === "cancelled" && (
                <div className="ingest-title">
                    <span>
                        Indexing <strong title={ingest.path}>{name}</strong> was cancelled
                        {ingest.summary !== null && <>; {plural(ingest.summary.files, "file")} indexed so far</>}.
                    </span>
                    {dismiss}
                </div>
            )}
            {ingest.state === "error" && ingest.error !== null && (
                <div className="ingest-title">
                    <span className="library-error" role="alert" data-testid="ingest-error" data-code={ingest.error.code}>
                        Could not index <strong title={ingest.path}>{ingest.path}</strong>: {ingest.error.message}
                    </span>
                    {dismiss}
                </div>
            )}
        </section>
    );
}

/** The engine computing the chunks' KV caches in the background (lowest priority: questions go first). */
function CacheWarming() {
    const warm = useApp((state) => state.cacheWarm);
    const busy = useApp((state) => state.cacheWarmBusy);
    const online = useApp((state) => state.connection.kind === "open");
    const pause = useApp((state) => state.pauseCacheWarm);
    const resume = useApp((state) => state.resumeCacheWarm);

    if (warm === null || (warm.state !== "running" && warm.state !== "paused"))
        return null;

    const paused = warm.state === "paused";
    const fraction = warm.total > 0 ? warm.done / warm.total : null;
    return (
        <section
            className="ingest cache-warm"
            data-testid="cache-warm"
            data-state={warm.state}
            data-done={warm.done}
            data-total={warm.total}
            aria-label="Preparing KV caches"
        >
            <div className="ingest-title">
                <span data-testid="cache-warm-numbers" title="Each chunk's KV cache is computed ahead of questions, so answers can reuse it.">
                    Preparing KV caches: {formatCount(warm.done)}/{formatCount(warm.total)}{paused && " (paused)"}
                </span>
                <button
                    type="button"
                    className="ghost-button small"
                    data-testid="cache-warm-toggle"
                    onClick={paused ? resume : pause}
                    disabled={busy || !online}
                >
                    {paused ? "Resume" : "Pause"}
                </button>
            </div>
            <div
                className={`progress-track${fraction === null && !paused ? " indeterminate" : ""}`}
                role="progressbar"
                aria-label="Preparing KV caches"
                aria-valuemin={0}
                aria-valuemax={warm.total}
                aria-valuenow={fraction === null ? undefined : warm.done}
            >
                <div className="progress-fill" style={{width: `${Math.round((fraction ?? 0) * 100)}%`}} />
            </div>
            <p className="ingest-numbers">
                {formatCount(warm.computed)} computed
                {warm.failed > 0 && <span className="ingest-problems">{" · "}{plural(warm.failed, "failure")}</span>}
                {" · "}questions go first
            </p>
        </section>
    );
}

function LibraryError() {
    const error = useApp((state) => state.libraryError);
    const dismiss = useApp((state) => state.dismissLibraryError);
    if (error === null)
        return null;
    return (
        <div className="library-error library-notice" role="alert" data-testid="library-error">
            <span>{error}</span>
            <button type="button" className="link-button" onClick={dismiss} aria-label="Dismiss">Dismiss</button>
        </div>
    );
}

function FolderList() {
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

function ProblemList({folder, problems, kind}: {folder: FolderInfo; problems: FileProblem[]; kind: "errors" | "skipped"}) {
    if (problems.length === 0)
        return null;
    const label = kind === "errors" ? plural(problems.length, "error") : `${formatCount(problems.length)} skipped`;
    return (
        <details className={`problems ${kind}`} data-testid={kind === "errors" ? "folder-errors" : "folder-skipped"}>
            <summary>{label}</summary>
            <ul>
                {problems.map((problem) => (
                    <li key={problem.path} data-path={problem.path}>
                        <span className="problem-path" title={problem.path}>{relativePath(problem.path, folder.path)}</span>
                        <span className="problem-reason">{problem.reason}</span>
                    </li>
                ))}
            </ul>
        </details>
    );
}

function FolderRow({folder}: {folder: FolderInfo}) {
    const ingest = useApp((state) => state.ingest);
    const confirming = useApp((state) => state.confirmRemoveId === folder.id);
    const removing = useApp((state) => state.removingId === folder.id);
    const online = useApp((state) => state.connection.kind === "open");
    const addFolder = useApp((state) => state.addFolder);
    const requestRemoveFolder = useApp((state) => state.requestRemoveFolder);
    const confirmRemoveFolder = useApp((state) => state.confirmRemoveFolder);
    const keepFolder = useApp((state) => state.keepFolder);

    const indexing = ingest?.state === "running";
    const indexingThis = indexing && ingestTargets(ingest, folder);

    return (
        <li
            className="folder"
            data-testid="folder-row"
            data-path={folder.path}
            data-id={folder.id}
            data-files={folder.files}
            data-chunks={folder.chunks}
        >
            <div className="folder-name" title={folder.path}>
                <strong>{baseName(folder.path) || folder.path}</strong>
                {indexingThis && <span className="folder-badge">indexing…</span>}
            </div>
            <div className="folder-path" title={folder.path}>{folder.path}</div>
            <div className="folder-meta">
                <span data-testid="folder-files">{plural(folder.files, "file")}</span>
                {" · "}
                <span data-testid="folder-chunks">{plural(folder.chunks, "chunk")}</span>
                {" · "}
                {folder.lastIndexedAt === null
                    ? <span>not indexed yet</span>
                    : <span title={`Last indexed ${formatDateTime(folder.lastIndexedAt)}`}>indexed {formatWhen(folder.lastIndexedAt)}</span>}
            </div>
            <ProblemList folder={folder} problems={folder.errors} kind="errors" />
            <ProblemList folder={folder} problems={folder.skipped} kind="skipped" />
            {confirming ? (
                <div className="folder-actions confirm" role="group" aria-label="Confirm removal">
                    <span>Remove from the library? The files stay on disk.</span>
                    <button type="button" className="danger-button small" data-testid="confirm-remove" onClick={confirmRemoveFolder}>
                        Remove
                    </button>
                    <button type="button" className="ghost-button small" data-testid="keep-folder" onClick={keepFolder} autoFocus>
                        Keep
                    </button>
                </div>
            ) : (
                <div className="folder-actions">
                    <button
                        type="button"
                        className="ghost-button small"
                        data-testid="reindex-folder"
                        disabled={!online || indexing || removing}
                        onClick={() => addFolder(folder.path)}
                        title="Index new and changed files again"
                    >
                        Re-index
                    </button>
                    <button
                        type="button"
                        className="ghost-button small"
                        data-testid="remove-folder"
                        disabled={!online || indexingThis || removing}
                        onClick={() => requestRemoveFolder(folder.id)}
                    >
                        {removing ? "Removing…" : "Remove"}
                    </button>
                </div>
            )}
        </li>
    );
}
