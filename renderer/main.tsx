import {StrictMode} from "react";
import {createRoot} from "react-dom/client";
import {createEngineClient} from "../main/contract/index.js";
import {App} from "./App.js";
import {createBridge, type Bridge} from "./bridge.js";
import {createAppStore, StoreContext} from "./store/index.js";
import {pickTransport} from "./transport/pick.js";

const {raw, connection} = pickTransport();
const client = createEngineClient(raw);
let bridge: Bridge | null = null;
const store = createAppStore(connection, () => {
    if (bridge === null)
        throw new Error("the engine bridge is not ready");
    return bridge;
});
bridge = createBridge(client, store, connection);

const rootElement = document.getElementById("root");
if (rootElement === null)
    throw new Error("index.html has no #root");

createRoot(rootElement).render(
    <StrictMode>
        <StoreContext.Provider value={store}>
            <App />
        </StoreContext.Provider>
    </StrictMode>
);
