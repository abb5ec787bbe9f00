import {useApp} from "../../store/index.js";

/** A failed library request, inline in the panel. */
export function LibraryError() {
    const error = useApp((state) => state.libraryError);
    const dismiss = useApp((state) => state.dismissLibraryError);
    if (error === null)
        return null;
    return (
        <div className="library-error library-notice" role="alert" data-testid="library-error">
            <span>{error}</span>
            <button type="button" className="link-button" onClick={dismiss} aria-label="Dismiss">Dismiss</button>
        </div>
    );
}
