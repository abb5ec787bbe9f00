import {useState} from "react";
import type {Download} from "../../store/index.js";
import {useApp} from "../../store/index.js";
import {baseName, formatBytes, formatMBps} from "../format.js";

/** Download by URL or Hugging Face reference, and every download of this session with its progress. */
export function Downloads() {
    const downloads = useApp((state) => state.downloads);
    const start = useApp((state) => state.startDownload);
    const online = useApp((state) => state.connection.kind === "open");
    const [source, setSource] = useState("");

    return (
        <section aria-labelledby="downloads-heading">
            <h2 id="downloads-heading">Download a model</h2>
            <form className="add-folder-row" onSubmit={(event) => {
                event.preventDefault();
                if (source.trim() !== "") {
                    start(source);
                    setSource("");
                }
            }}>
                <input type="text" aria-label="Model URL or Hugging Face reference" placeholder="https://…/model.gguf or hf:owner/repo/file.gguf"
                    value={source} spellCheck={false} onChange={(event) => setSource(event.target.value)} />
                <button type="submit" className="primary-button" disabled={!online || source.trim() === ""}>Download</button>
            </form>
            {downloads.length > 0 && (
                <ul className="downloads" aria-label="Downloads">
                    {downloads.map((download) => <DownloadRow key={download.source} download={download} />)}
                </ul>
            )}
        </section>
    );
}

function DownloadRow({download}: {download: Download}) {
    const cancel = useApp((state) => state.cancelDownload);
    const start = useApp((state) => state.startDownload);
    const name = baseName(download.source.replace(/^hf:/, ""));
    const progress = download.progress;
    const fraction = progress !== null && progress.totalBytes > 0 ? progress.downloadedBytes / progress.totalBytes : null;
    return (
        <li className="download" data-state={download.state}>
            <div className="ingest-title">
                <span title={download.source}>{name}</span>
                {download.state === "running" && (
                    <button type="button" className="stop-button small" aria-label={`Cancel downloading ${name}`} onClick={() => cancel(download.source)}>Cancel</button>
                )}
                {(download.state === "cancelled" || download.state === "error") && (
                    <button type="button" className="ghost-button small" aria-label={`Resume downloading ${name}`} onClick={() => start(download.source)}>Resume</button>
                )}
            </div>
            <div className="progress-track" role="progressbar" aria-label={`Downloading ${name}`} aria-valuemin={0}
                aria-valuemax={progress?.totalBytes || undefined} aria-valuenow={progress?.downloadedBytes}>
                <div className="progress-fill" style={{width: `${Math.round((fraction ?? 0) * 100)}%`}} />
            </div>
            <p className="ingest-numbers" aria-live="polite">
                {download.state === "done" && `Done: ${download.model?.name ?? name} is in the list above.`}
                {download.state === "cancelled" && `Cancelled at ${formatBytes(progress?.downloadedBytes ?? 0)}; Resume keeps the part already saved.`}
                {download.state === "error" && `Failed: ${download.error ?? "unknown error"}`}
                {download.state === "running" && (progress === null ? "Starting…" : (
                    `${formatBytes(progress.downloadedBytes)}${progress.totalBytes > 0 ? ` of ${formatBytes(progress.totalBytes)}` : ""} · ${formatMBps(progress.bytesPerSecond)}`
                ))}
            </p>
        </li>
    );
}
