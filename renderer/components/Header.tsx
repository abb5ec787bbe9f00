import {useApp} from "../store/index.js";
import {ConnectionBadge} from "./ConnectionBadge.js";
import {shortcutKey as shortcutLabel} from "./keys.js";
import {ModelPicker} from "./ModelPicker.js";
import type {ViewName} from "../store/index.js";

const views: [ViewName, string][] = [["chat", "Chat"], ["models", "Models"], ["cache", "Cache"], ["settings", "Settings"]];

/** The main views; the current one is marked for assistive technology with aria-current. */
function ViewNav() {
    const view = useApp((state) => state.view);
    const setView = useApp((state) => state.setView);
    return (
        <nav className="view-nav" aria-label="Views">
            {views.map(([name, label]) => (
                <button key={name} type="button" className={`ghost-button${view === name ? " active" : ""}`}
                    aria-current={view === name ? "page" : undefined} onClick={() => setView(name)}>
                    {label}
                </button>
            ))}
        </nav>
    );
}

export function Header() {
    const status = useApp((state) => state.status);
    const libraryOpen = useApp((state) => state.libraryOpen);
    const folderCount = useApp((state) => state.folders.length);
    const indexing = useApp((state) => state.ingest?.state === "running");
    const toggleLibrary = useApp((state) => state.toggleLibrary);

    return (
        <header className="app-header">
            <div className="brand">
                <img src="assets/icon.png" alt="" width={22} height={22} />
                <span className="brand-name">Weft</span>
            </div>
            <ConnectionBadge />
            {status !== null && (
                <span
                    className="backend"
                    data-testid="backend"
                    title={`Weft ${status.version} · ${status.threads} thread${status.threads === 1 ? "" : "s"}\n${status.dataDir}`}
                >
                    {status.backend ?? "no backend yet"}
                </span>
            )}
            <ViewNav />
            <div className="header-spacer" />
            <ModelPicker />
            <button
                type="button"
                className={`ghost-button library-toggle${libraryOpen ? " active" : ""}`}
                data-testid="library-toggle"
                aria-pressed={libraryOpen}
                aria-controls="library-panel"
                title={`${indexing ? "Indexing a folder · " : ""}Library (${shortcutLabel}+L)`}
                onClick={() => toggleLibrary()}
            >
                {indexing && <span className="activity-dot" aria-hidden="true" />}
                Library
                {folderCount > 0 && <span className="count">{folderCount}</span>}
            </button>
        </header>
    );
}
