import {useId} from "react";
import type {Citation} from "../../../main/contract/index.js";
import {baseName, formatCount} from "../format.js";

/** "[n]" in an answer: hovering or focusing it shows the passage the model was given, with its file and page. */
export function CitationPreview({citation, label}: {citation: Citation; label: string}) {
    const tipId = useId();
    const where = `${baseName(citation.path)}${citation.page !== null ? `, p. ${formatCount(citation.page)}` : ""}`;
    return (
        <span className="cite-ref" tabIndex={0} aria-describedby={tipId} data-n={citation.n}>
            {label}
            <span role="tooltip" id={tipId} className="cite-tip">
                <strong>{where}</strong>
                <span className="cite-tip-text">{citation.text?.trim() || "(no passage text)"}</span>
            </span>
        </span>
    );
}
