import {useApp} from "../store/index.js";
import {ConnectionBadge} from "./ConnectionBadge.js";
import {ModelPicker} from "./ModelPicker.js";

const shortcutLabel = typeof navigator !== "undefined" && /Mac|iPhone|iPad/.test(navigator.platform) ? "⌘" : "Ctrl";

export function Header() {
    const status = useApp((state) => state.status);
    const hasTurns = useApp((state) => state.turns.length > 0);
    const streaming = useApp((state) => state.activeTurnId !== null);
    const clearChat = useApp((state) => state.clearChat);
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
            <button type="button" className="ghost-button" onClick={clearChat} disabled={!hasTurns || streaming}>
                New chat
            </button>
        </header>
    );
}
