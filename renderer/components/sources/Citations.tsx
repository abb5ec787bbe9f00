import type {Citation} from "../../../main/contract/index.js";
import {useApp} from "../../store/index.js";
import {baseName, formatCount} from "../format.js";
import {CitationPreview} from "./CitationPreview.js";

/**
 * Sources under an answer, as "[n] file name (p. N)": hovering shows the passage the model was given, a click
 * expands it, and Open shows the document at that page inside the app.
 */
export function Citations({citations}: {citations: Citation[]}) {
    if (citations.length === 0)
        return null;
    const sorted = [...citations].sort((a, b) => a.n - b.n);
    return (
        <ol className="citations" data-testid="citations" aria-label="Sources">
            {sorted.map((citation) => (
                <CitationItem key={`${citation.n}:${citation.path}:${citation.span[0]}`} citation={citation} />
            ))}
        </ol>
    );
}

function CitationItem({citation}: {citation: Citation}) {
    const openDocument = useApp((state) => state.openDocument);
    const online = useApp((state) => state.connection.kind === "open");
    const name = baseName(citation.path);
    const page = citation.page !== null ? ` (p. ${formatCount(citation.page)})` : "";
    const label = (
        <>
            <span className="citation-n"><CitationPreview citation={citation} label={`[${citation.n}]`} /></span>{" "}
            <span className="citation-path" title={citation.path}>{name}</span>
            {page !== "" && <span className="citation-page">{page}</span>}
        </>
    );
    const text = citation.text?.trim() ?? "";
    return (
        <li
            className="citation"
            data-testid="citation"
            data-n={citation.n}
            data-path={citation.path}
            data-page={citation.page ?? undefined}
            title={citation.path}
        >
            <div className="citation-row">
                {text === "" ? <div className="citation-line">{label}</div> : (
                    <details>
                        <summary className="citation-line">{label}</summary>
                        <blockquote className="citation-text" data-testid="citation-text">{text}</blockquote>
                    </details>
                )}
                <button
                    type="button"
                    className="ghost-button small citation-open"
                    aria-label={`Open ${name}${page}`}
                    disabled={!online}
                    onClick={() => openDocument(citation)}
                >
                    Open
                </button>
            </div>
        </li>
    );
}
