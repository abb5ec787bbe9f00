import type {UtilityProcess} from "electron";
import type {EngineChild} from "./engine-process.js";

export const engineServiceName = "Weft engine";

type Fork = (modulePath: string, args: string[], options: {serviceName: string; stdio: "inherit"}) => UtilityProcess;

/**
 * Electron's utilityProcess as an EngineChild. The exit event has only a code; the app's `child-process-gone`
 * event has the reason ("crashed", "oom", …), which `noteGone` passes in to be part of what the window shows.
 */
export function spawnUtilityEngine(fork: Fork, hostPath: string, dataDir: string): EngineChild & {noteGone(reason: string, exitCode: number): void} {
    const child = fork(hostPath, ["--data", dataDir], {serviceName: engineServiceName, stdio: "inherit"});
    const exitListeners: ((reason: string) => void)[] = [];
    let gone: string | null = null;
    child.on("exit", (code) => {
        // child-process-gone may arrive just after exit: give it a turn.
        setTimeout(() => {
            const reason = gone ?? (code === 0 ? "it exited" : `exit code ${code}`);
            for (const listener of exitListeners)
                listener(reason);
        }, 50);
    });
    return {
        postMessage: (message) => child.postMessage(message),
        onMessage: (listener) => child.on("message", listener),
        onExit: (listener) => exitListeners.push(listener),
        kill: () => child.kill(),
        noteGone: (reason, exitCode) => {
            gone = `${reason}, exit code ${exitCode}`;
        }
    };
}
