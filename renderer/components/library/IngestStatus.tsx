import {useApp} from "../../store/index.js";
import {baseName, formatCount, formatMBps, formatMs, plural} from "../format.js";

/** The current (or last) indexing run: progress while it runs, then what it did. */
export function IngestStatus() {
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
