import {Fragment} from "react";
import type {Citation} from "../../../main/contract/index.js";
import {CitationPreview} from "./CitationPreview.js";

/** The answer with each "[n]" that names a source turned into a marker that shows its passage on hover or focus. */
export function AnswerText({text, citations}: {text: string; citations: Citation[]}) {
    if (citations.length === 0 || !/\[\d+\]/.test(text))
        return <>{text}</>;
    const byN = new Map(citations.map((citation) => [citation.n, citation]));
    const parts = text.split(/(\[\d+\])/);
    return (
        <>
            {parts.map((part, index) => {
                const citation = /^\[(\d+)\]$/.test(part) ? byN.get(Number(part.slice(1, -1))) : undefined;
                return citation === undefined
                    ? <Fragment key={index}>{part}</Fragment>
                    : <CitationPreview key={index} citation={citation} label={part} />;
            })}
        </>
    );
}
