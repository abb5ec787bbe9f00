import type {ConnectionSource} from "../transport/connection.js";
import type {ConnectionSlice, EngineActions, SliceCreator} from "./types.js";

export const createConnectionSlice = (connection: ConnectionSource, engine: () => EngineActions): SliceCreator<ConnectionSlice> =>
    (set) => ({
        transport: connection.transport,
        connection: connection.get(),
        status: null,
        engineState: null,
        notice: null,
        retryConnection: () => engine().retryConnection(),
        dismissNotice: () => set({notice: null})
    });
