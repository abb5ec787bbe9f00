import {useEffect, useRef, useState} from "react";
import type {Citation, OpenedDocument} from "../../../main/contract/index.js";
import {formatCount} from "../format.js";

type Pdfjs = typeof import("pdfjs-dist");
type PdfDocumentProxy = Awaited<ReturnType<Pdfjs["getDocument"]>["promise"]>;

let pdfjsPromise: Promise<Pdfjs> | null = null;

/**
 * pdf.js ships next to the app (dist/renderer/pdfjs/, copied by the build) and loads only when a PDF is opened;
 * its worker is a same-origin module, which the CSP allows.
 */
function loadPdfjs(): Promise<Pdfjs> {
    const url = new URL("pdfjs/pdf.min.mjs", document.baseURI).href;
    pdfjsPromise ??= (import(/* webpackIgnore: true */ url) as Promise<Pdfjs>).then((pdfjs) => {
        pdfjs.GlobalWorkerOptions.workerSrc = new URL("pdfjs/pdf.worker.min.mjs", document.baseURI).href;
        return pdfjs;
    });
    return pdfjsPromise;
}

function bytesOf(base64: string): Uint8Array {
    const binary = atob(base64);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++)
        bytes[i] = binary.charCodeAt(i);
    return bytes;
}

/** A PDF drawn one page at a time, opened at the cited page, with the cited passage beside it. */
export function PdfDocument({document: opened, citation}: {document: Extract<OpenedDocument, {kind: "pdf"}>; citation: Citation}) {
    const canvas = useRef<HTMLCanvasElement>(null);
    const [pdf, setPdf] = useState<PdfDocumentProxy | null>(null);
    const [page, setPage] = useState(citation.page ?? 1);
    const [error, setError] = useState<string | null>(null);
    const [rendered, setRendered] = useState(0);

    useEffect(() => {
        let cancelled = false;
        let loaded: PdfDocumentProxy | null = null;
        loadPdfjs()
            .then((pdfjs) => pdfjs.getDocument({data: bytesOf(opened.base64), isEvalSupported: false}).promise)
            .then((proxy) => {
                loaded = proxy;
                if (cancelled)
                    void proxy.destroy();
                else
                    setPdf(proxy);
            })
            .catch((reason: unknown) => !cancelled && setError(reason instanceof Error ? reason.message : String(reason)));
        return () => {
            cancelled = true;
            void loaded?.destroy();
        };
    }, [opened.base64]);

    useEffect(() => {
        if (pdf === null || canvas.current === null)
            return;
        let task: {cancel(): void; promise: Promise<void>} | null = null;
        let cancelled = false;
        void pdf.getPage(Math.min(Math.max(1, page), pdf.numPages)).then((pageProxy) => {
            if (cancelled || canvas.current === null)
                return;
            const element = canvas.current;
            const width = Math.min(720, element.parentElement?.clientWidth ?? 720);
            const unscaled = pageProxy.getViewport({scale: 1});
            const viewport = pageProxy.getViewport({scale: Math.min(2, Math.max(0.5, (width - 16) / unscaled.width)) * devicePixelRatio});
            element.width = viewport.width;
            element.height = viewport.height;
            element.style.width = `${viewport.width / devicePixelRatio}px`;
            task = pageProxy.render({canvas: element, viewport});
            task.promise.then(() => !cancelled && setRendered(page), () => {});
        }).catch((reason: unknown) => !cancelled && setError(String(reason)));
        return () => {
            cancelled = true;
            task?.cancel();
        };
    }, [pdf, page]);

    const pages = pdf?.numPages ?? 0;
    return (
        <div className="pdf-view" data-page={rendered || undefined}>
            {error !== null && <p className="answer-error" role="alert">Could not draw the PDF: {error}</p>}
            <div className="pdf-nav" role="group" aria-label="Pages">
                <button type="button" className="ghost-button small" disabled={page <= 1} onClick={() => setPage(page - 1)}>Previous page</button>
                <span aria-live="polite">Page {formatCount(page)}{pages > 0 && ` of ${formatCount(pages)}`}</span>
                <button type="button" className="ghost-button small" disabled={pages === 0 || page >= pages} onClick={() => setPage(page + 1)}>
                    Next page
                </button>
            </div>
            {citation.text !== undefined && (
                <blockquote className="citation-text" aria-label="Cited passage">{citation.text.trim()}</blockquote>
            )}
            <div className="pdf-page">
                <canvas ref={canvas} aria-label={`Page ${page}`} role="img" />
            </div>
        </div>
    );
}
