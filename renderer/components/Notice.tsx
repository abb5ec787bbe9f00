import {useApp} from "../store/index.js";

/** A dismissible banner for failed requests that do not belong to an answer. */
export function Notice() {
    const notice = useApp((state) => state.notice);
    const dismiss = useApp((state) => state.dismissNotice);
    if (notice === null)
        return null;
    return (
        <div className="notice" role="alert" data-testid="notice">
            <span>{notice.message}</span>
            <button type="button" className="link-button" onClick={dismiss} aria-label="Dismiss">Dismiss</button>
        </div>
    );
}
