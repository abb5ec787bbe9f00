import type {Citation} from "../../main/contract/index.js";

/** Sources under an answer, as "[n] path (page N)". */
export function Citations({citations}: {citations: Citation[]}) {
    if (citations.length === 0)
        return null;
    const sorted = [...citations].sort((a, b) => a.n - b.n);
    return (
        <ol className="citations" data-testid="citations" aria-label="Sources">
            {sorted.map((citation) => (
                <li key={`${citation.n}:${citation.path}:${citation.span[0]}`} title={citation.text ?? citation.path}>
                    <span className="citation-n">[{citation.n}]</span>{" "}
                    <span className="citation-path">{citation.path}</span>
                    {citation.page !== null && <span className="citation-page"> (page {citation.page})</span>}
                </li>
            ))}
        </ol>
    );
}
