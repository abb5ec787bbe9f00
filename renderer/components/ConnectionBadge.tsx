import {useEffect, useState} from "react";
import {useApp} from "../store/index.js";

function useCountdown(targetMs: number | null): number | null {
    const [now, setNow] = useState(() => Date.now());
    useEffect(() => {
        if (targetMs === null)
            return;
        setNow(Date.now());
        const timer = setInterval(() => setNow(Date.now()), 250);
        return () => clearInterval(timer);
    }, [targetMs]);
    return targetMs === null ? null : Math.max(0, Math.ceil((targetMs - now) / 1000));
}

/** Connected / connecting / reconnecting (with a countdown and "Retry now") / not authorized. */
export function ConnectionBadge() {
    const connection = useApp((state) => state.connection);
    const transport = useApp((state) => state.transport);
    const retryConnection = useApp((state) => state.retryConnection);
    // The desktop app's engine process restarting after a crash (the banner says why).
    const engineRestarting = useApp((state) => state.engineState);
    const seconds = useCountdown(connection.kind === "reconnecting" ? connection.retryAt : null);

    let label: string;
    let title: string;
    switch (connection.kind) {
        case "open":
            label = engineRestarting !== null ? "Engine restarting…" : "Connected";
            title = engineRestarting !== null ? `The engine stopped (${engineRestarting}) and is restarting`
                : transport === "ipc" ? "Connected to the built-in engine" : "Connected to weft serve";
            break;
        case "connecting":
            label = connection.attempt > 1 ? "Reconnecting…" : "Connecting…";
            title = "Connecting to the engine";
            break;
        case "reconnecting":
            label = seconds !== null && seconds > 0 ? `Offline · retry in ${seconds}s` : "Offline";
            title = connection.reason;
            break;
        case "unauthorized":
            label = "Not authorized";
            title = connection.reason;
            break;
    }

    return (
        <div className="connection" data-testid="connection-state" data-state={connection.kind}
            data-engine={engineRestarting !== null ? "restarting" : "running"} title={title}>
            <span className="connection-dot" aria-hidden="true" />
            <span>{label}</span>
            {connection.kind === "reconnecting" && (
                <button type="button" className="link-button" onClick={retryConnection}>Retry now</button>
            )}
        </div>
    );
}
