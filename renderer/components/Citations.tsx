import type {Citation} from "../../main/contract/index.js";
import {baseName, formatCount} from "./format.js";

/**
 * Sources under an answer, as "[n] file name (p. N)"; the full path is the tooltip and the passage the model
 * was given opens underneath.
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
    const label = (
        <>
            <span className="citation-n">[{citation.n}]</span>{" "}
            <span className="citation-path" title={citation.path}>{baseName(citation.path)}</span>
            {citation.page !== null && <span className="citation-page"> (p. {formatCount(citation.page)})</span>}
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
        >
            {text === "" ? <div className="citation-line">{label}</div> : (
                <details>
                    <summary className="citation-line">{label}</summary>
                    <blockquote className="citation-text" data-testid="citation-text">{text}</blockquote>
                </details>
            )}
        </li>
    );
}
