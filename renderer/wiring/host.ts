import type {HostEvent, StreamHandle} from "../../main/contract/index.js";
import type {Wiring, WiringContext} from "./context.js";

/**
 * Follows the host around the engine: in the desktop app the engine runs in its own process, and when it dies the
 * window says why while it restarts, then reloads what it shows. A model added from the menu refreshes the list.
 */
export function wireHost({client, store, notify}: WiringContext, onEngineBack: () => void, onModelsChanged: () => void): Wiring<object> {
    let stream: StreamHandle | null = null;
    let sawRestart = false;

    const onEvent = (event: HostEvent) => {
        if (event.type === "state") {
            store.setState({engineState: event.state === "running" ? null : event.reason ?? "restarting"});
            if (event.state === "restarting") {
                sawRestart = true;
                notify(`The engine stopped (${event.reason ?? "unknown reason"}) and is restarting; answers in progress ended with an error, nothing saved is lost.`);
            } else if (sawRestart) {
                sawRestart = false;
                onEngineBack();
            }
        } else if (event.type === "modelsChanged")
            onModelsChanged();
    };

    return {
        onOpen() {
            stream?.cancel();
            stream = client.watchHost({}, onEvent);
        },
        dispose: () => stream?.cancel(),
        actions: {}
    };
}
