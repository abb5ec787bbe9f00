import type {EngineStatus} from "../../main/contract/index.js";
import type {ModelsActions} from "../store/index.js";
import {messageOf, type Wiring, type WiringContext} from "./context.js";

export type ModelsWiring = Wiring<ModelsActions> & {
    /** Re-reads the engine status (active and loaded model, backend) after something may have changed it. */
    refreshStatus(): Promise<void>;
};

/** Engine status and the model list: loaded on every (re)connect, changed by select and add. */
export function wireModels({client, store, connection, notify}: WiringContext, cacheWarmLive: () => boolean): ModelsWiring {
    /** The warming status inside a getStatus reply; the event stream, when it runs, is newer. */
    const warmFrom = (status: EngineStatus) => (cacheWarmLive() ? {} : {cacheWarm: status.cacheWarm});

    const refreshStatus = async () => {
        const status = await client.getStatus({});
        store.setState({status, activeModelId: status.activeModelId, ...warmFrom(status)});
    };

    const refresh = async () => {
        try {
            const [status, models] = await Promise.all([client.getStatus({}), client.listModels({})]);
            store.setState({status, models, modelsLoaded: true, activeModelId: status.activeModelId, ...warmFrom(status)});
        } catch (error) {
            // A lost connection is already on screen; anything else deserves a banner.
            if (connection.get().kind === "open")
                notify(`Could not load the engine status: ${messageOf(error)}`);
        }
    };

    return {
        refreshStatus,
        onOpen: () => void refresh(),
        actions: {
            refresh,

            async selectModel(id) {
                const previous = store.getState().activeModelId;
                store.setState({activeModelId: id, modelBusy: true});
                try {
                    const model = await client.selectModel({id});
                    store.setState((state) => ({
                        activeModelId: model.id,
                        models: state.models.map((m) => (m.id === model.id ? {...m, ...model} : m))
                    }));
                    await refreshStatus();
                } catch (error) {
                    store.setState({activeModelId: previous});
                    notify(`Could not select the model: ${messageOf(error)}`);
                } finally {
                    store.setState({modelBusy: false});
                }
            },

            async loadHardware() {
                try {
                    const [hardware, details] = await Promise.all([client.getHardware({}), client.listModelDetails({})]);
                    store.setState({hardware, modelDetails: Object.fromEntries(details.map((detail) => [detail.id, detail]))});
                } catch (error) {
                    notify(`Could not read the backend and GPUs: ${messageOf(error)}`);
                }
            },

            async addModel(path) {
                if (path === "")
                    return false;
                store.setState({modelBusy: true});
                try {
                    const model = await client.addModel({path});
                    // The list says whether each model can blend, which adding does not.
                    store.setState({models: await client.listModels({})});
                    if (store.getState().activeModelId === null)
                        await client.selectModel({id: model.id}).then(() => refreshStatus());
                    return true;
                } catch (error) {
                    notify(`Could not add the model: ${messageOf(error)}`);
                    return false;
                } finally {
                    store.setState({modelBusy: false});
                }
            }
        }
    };
}
