import {useEffect, useRef} from "react";

/** The document's indexed text with the cited span marked and scrolled into view. */
export function TextDocument({text, span}: {text: string; span: [number, number]}) {
    const mark = useRef<HTMLElement>(null);
    const [start, end] = [Math.min(span[0], text.length), Math.min(span[1], text.length)];

    useEffect(() => {
        mark.current?.scrollIntoView({block: "center"});
    }, [text, start, end]);

    return (
        <pre className="viewer-text" aria-label="Document text">
            {text.slice(0, start)}
            <mark ref={mark} aria-label="Cited passage">{text.slice(start, end)}</mark>
            {text.slice(end)}
        </pre>
    );
}
