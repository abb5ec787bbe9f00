import {useApp} from "../store/index.js";
import {ConnectionBadge} from "./ConnectionBadge.js";
import {ModelPicker} from "./ModelPicker.js";

export function Header() {
    const status = useApp((state) => state.status);
    const hasTurns = useApp((state) => state.turns.length > 0);
    const streaming = useApp((state) => state.activeTurnId !== null);
    const clearChat = useApp((state) => state.clearChat);

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
            <button type="button" className="ghost-button" onClick={clearChat} disabled={!hasTurns || streaming}>
                New chat
            </button>
        </header>
    );
}
