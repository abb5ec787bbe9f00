import {useApp} from "../../store/index.js";
import {formatBytes} from "../format.js";

const backendNames = {cpu: "CPU", cuda: "CUDA", metal: "Metal", vulkan: "Vulkan"} as const;

export function HardwareInfo() {
    const hardware = useApp((state) => state.hardware);
    if (hardware === null)
        return <p className="hardware">Starting the backend…</p>;
    return (
        <p className="hardware" aria-label="Backend">
            Running on <strong data-backend={hardware.backend}>{backendNames[hardware.backend]}</strong>
            {hardware.gpuNames.length > 0 && <> · {hardware.gpuNames.join(", ")}</>}
            {hardware.vramTotalBytes > 0 && <> · {formatBytes(hardware.vramTotalBytes - hardware.vramUsedBytes)} free of {formatBytes(hardware.vramTotalBytes)}</>}
            {" · "}{hardware.threads} thread{hardware.threads === 1 ? "" : "s"}
        </p>
    );
}
