import type {FileProblem, FolderInfo} from "../../../main/contract/index.js";
import {useApp, type Ingest} from "../../store/index.js";
import {baseName, formatCount, formatDateTime, formatWhen, plural, relativePath} from "../format.js";

/** Paths compare equal with or without a trailing separator. */
function samePath(a: string, b: string): boolean {
    return a.replace(/[\\/]+$/, "") === b.replace(/[\\/]+$/, "");
}

function ingestTargets(ingest: Ingest | null, folder: FolderInfo): boolean {
    return ingest !== null && (samePath(ingest.path, folder.path) || (ingest.summary !== null && samePath(ingest.summary.folder, folder.path)));
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

/** One folder: counts, files that failed or were skipped, Re-index and Remove (confirmed first). */
export function FolderRow({folder}: {folder: FolderInfo}) {
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
