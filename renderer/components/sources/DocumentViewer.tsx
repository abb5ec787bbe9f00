import {useEffect, useRef} from "react";
import {useApp} from "../../store/index.js";
import {baseName, formatCount} from "../format.js";
import {PdfDocument} from "./PdfDocument.js";
import {TextDocument} from "./TextDocument.js";

/** A cited document inside the app, over the chat: a PDF at the cited page, anything else as text with the passage marked. */
export function DocumentViewer() {
    const viewer = useApp((state) => state.viewer);
    const close = useApp((state) => state.closeDocument);
    const showInSystemViewer = useApp((state) => state.showInSystemViewer);
    // A browser tab has no system viewer to hand the file to; the desktop app does.
    const desktop = useApp((state) => state.transport === "ipc");
    const closeButton = useRef<HTMLButtonElement>(null);

    useEffect(() => {
        if (viewer !== null)
            closeButton.current?.focus();
    }, [viewer?.citation]);

    if (viewer === null)
        return null;
    const {citation, document, error} = viewer;
    const name = baseName(citation.path);
    return (
        <div className="viewer-backdrop" onClick={(event) => event.target === event.currentTarget && close()}>
            <div
                className="viewer"
                role="dialog"
                aria-modal="true"
                aria-label={`Document ${name}`}
                onKeyDown={(event) => {
                    // Escape closes the viewer here instead of stopping an answer.
                    if (event.key === "Escape") {
                        event.stopPropagation();
                        close();
                    }
                }}
            >
                <div className="viewer-head">
                    <h2 title={citation.path}>
                        {name}
                        {citation.page !== null && <span className="viewer-page-note"> · cited p. {formatCount(citation.page)}</span>}
                    </h2>
                    {desktop && (
                        <button type="button" className="ghost-button small" onClick={() => showInSystemViewer(citation.path)}>
                            Open in system viewer
                        </button>
                    )}
                    <button ref={closeButton} type="button" className="icon-button" aria-label="Close the document" onClick={close}>×</button>
                </div>
                <div className="viewer-body">
                    {error !== null && <p className="answer-error" role="alert">Could not open {name}: {error}</p>}
                    {error === null && document === null && <p className="viewer-loading">Opening {name}…</p>}
                    {document?.kind === "pdf" && <PdfDocument document={document} citation={citation} />}
                    {document?.kind === "text" && <TextDocument text={document.text} span={citation.span} />}
                </div>
            </div>
        </div>
    );
}
