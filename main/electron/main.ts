import {
    app, BrowserWindow, dialog, ipcMain, Menu, type MenuItemConstructorOptions, type OpenDialogOptions, screen, session, shell, utilityProcess
} from "electron";
import path from "node:path";
import {fileURLToPath, pathToFileURL} from "node:url";
import {toErrorShape} from "../contract/index.js";
import {appName, resolveDataDir} from "../engine/data-dir.js";
import {EngineProcess} from "./engine-process.js";
import {registerIpc} from "./ipc.js";
import {engineServiceName, spawnUtilityEngine} from "./utility-engine.js";
import {loadWindowState, saveWindowState, windowStatePath} from "./window-state.js";

// Paths are relative to the bundle, dist/electron/main.js (inside app.asar when packaged).
const here = path.dirname(fileURLToPath(import.meta.url));
const preloadPath = path.join(here, "preload.cjs");
const engineHostPath = path.join(here, "engine-host.js");
const rendererDir = path.join(here, "..", "renderer");
const rendererUrlPrefix = `${pathToFileURL(rendererDir).href}/`;
const iconPath = path.join(rendererDir, "assets", "icon.png");
// renderer/styles.css --bg, so the window does not flash white before the first paint.
const backgroundColor = "#15171c";
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'";
const quitTimeoutMs = 5000;

function dataFlag(argv: readonly string[]): string | undefined {
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i]!;
        if (arg === "--data")
            return argv[i + 1];

        if (arg.startsWith("--data="))
            return arg.slice("--data=".length);
    }

    return undefined;
}

app.setName(appName);
const flag = dataFlag(process.argv);
// userData is set explicitly because setName does not move a path Electron already derived from package.json's
// lowercase name. Pointing it at a --data folder also makes the single-instance lock, which lives there, per library.
const dataDir = flag != null || (process.env.WEFT_DATA ?? "") !== ""
    ? resolveDataDir(flag)
    : path.join(app.getPath("appData"), appName);
app.setPath("userData", dataDir);

let mainWindow: BrowserWindow | null = null;

if (!app.requestSingleInstanceLock()) {
    app.quit();
} else {
    app.on("second-instance", () => {
        if (mainWindow == null)
            return;

        if (mainWindow.isMinimized())
            mainWindow.restore();

        mainWindow.focus();
    });
    app.on("window-all-closed", () => {
        if (process.platform !== "darwin")
            app.quit();
    });
    app.on("web-contents-created", (_event, contents) => {
        contents.setWindowOpenHandler(({url}) => {
            openInBrowser(url);
            return {action: "deny"};
        });
        contents.on("will-navigate", (event) => {
            if (!event.url.startsWith(rendererUrlPrefix)) {
                event.preventDefault();
                openInBrowser(event.url);
            }
        });
        contents.on("will-attach-webview", (event) => event.preventDefault());
    });
    void start();
}

async function start(): Promise<void> {
    await app.whenReady();
    // The engine (llama.cpp, the native addon, LanceDB) runs in a utility process: a crash there ends the answers in
    // flight with its reason and the engine restarts, while the window stays.
    let current: ReturnType<typeof spawnUtilityEngine> | null = null;
    app.on("child-process-gone", (_event, details) => {
        if (details.type === "Utility" && details.serviceName === engineServiceName)
            current?.noteGone(details.reason, details.exitCode);
    });
    const engine = new EngineProcess({
        spawn: () => {
            current = spawnUtilityEngine((...args) => utilityProcess.fork(...args), engineHostPath, dataDir);
            return current;
        },
        log: (line) => console.error(`weft: ${line}`)
    }, {
        pickFolder: () => pickFolder(),
        // The engine checks the path is inside the library (links resolved) before the system opens it.
        showInSystemViewer: async ({path: requested}) => {
            const {path: real} = await engine.api.resolveDocument({path: requested});
            const failure = await shell.openPath(real);
            return {opened: failure === ""};
        }
    });
    try {
        await engine.start();
    } catch (error) {
        dialog.showErrorBox("Weft could not start", `The library folder ${dataDir} could not be opened: ${toErrorShape(error).message}`);
        app.exit(1);
        return;
    }

    hardenSession();
    const ipc = registerIpc(ipcMain, engine.api, {trustedUrlPrefix: rendererUrlPrefix});
    Menu.setApplicationMenu(buildMenu(engine));
    await createWindow();

    app.on("activate", () => {
        if (BrowserWindow.getAllWindows().length === 0)
            void createWindow();
    });

    // Electron does not wait for async listeners, so quitting is held until the engine has let go of the model.
    let engineClosed = false;
    let closing = false;
    app.on("before-quit", (event) => {
        if (engineClosed)
            return;

        event.preventDefault();
        if (closing)
            return;

        closing = true;
        ipc.cancelAll();
        const timeout = new Promise<void>((resolve) => setTimeout(resolve, quitTimeoutMs).unref());
        void Promise.race([engine.close(), timeout])
            .catch((error: unknown) => console.error("weft: closing the engine failed:", error))
            .finally(() => {
                engineClosed = true;
                app.quit();
            });
    });
}

function hardenSession(): void {
    const ses = session.defaultSession;
    ses.webRequest.onHeadersReceived((details, callback) => {
        callback({responseHeaders: {...details.responseHeaders, "Content-Security-Policy": [contentSecurityPolicy]}});
    });
    ses.setPermissionRequestHandler((_contents, _permission, callback) => callback(false));
    ses.setPermissionCheckHandler(() => false);
}

function openInBrowser(url: string): void {
    const protocol = URL.canParse(url) ? new URL(url).protocol : "";
    if (protocol === "https:" || protocol === "http:")
        shell.openExternal(url).catch((error: unknown) => console.error(`weft: could not open ${url}:`, error));
}

async function pickFolder(): Promise<{path: string | null}> {
    const owner = BrowserWindow.getFocusedWindow() ?? mainWindow;
    const options: OpenDialogOptions = {title: "Add a folder of documents", buttonLabel: "Add Folder", properties: ["openDirectory"]};
    const result = owner != null ? await dialog.showOpenDialog(owner, options) : await dialog.showOpenDialog(options);
    return {path: result.canceled ? null : result.filePaths[0] ?? null};
}

async function createWindow(): Promise<void> {
    const stateFile = windowStatePath(dataDir);
    const saved = await loadWindowState(stateFile, screen.getAllDisplays().map((display) => display.workArea));
    const window = new BrowserWindow({
        ...(saved.x !== undefined && saved.y !== undefined ? {x: saved.x, y: saved.y} : {}),
        width: saved.width,
        height: saved.height,
        minWidth: 640,
        minHeight: 480,
        title: "Weft",
        icon: iconPath,
        backgroundColor,
        show: false,
        webPreferences: {
            preload: preloadPath,
            contextIsolation: true,
            sandbox: true,
            nodeIntegration: false,
            webSecurity: true
        }
    });
    mainWindow = window;

    window.once("ready-to-show", () => {
        if (saved.maximized)
            window.maximize();
        window.show();
    });
    // Remembered on close, as it was before maximizing (the engine process warms the model up on its own).
    window.on("close", () => {
        const bounds = window.getNormalBounds();
        void saveWindowState(stateFile, {...bounds, maximized: window.isMaximized()})
            .catch((error: unknown) => console.error("weft: could not save the window state:", error));
    });
    window.on("closed", () => {
        if (mainWindow === window)
            mainWindow = null;
    });
    window.loadFile(path.join(rendererDir, "index.html"))
        .catch((error: unknown) => console.error("weft: could not load the interface:", error));
}

async function addModelFromDialog(engine: EngineProcess): Promise<void> {
    const owner = BrowserWindow.getFocusedWindow() ?? mainWindow;
    const options: OpenDialogOptions = {
        title: "Add a GGUF model",
        buttonLabel: "Add Model",
        properties: ["openFile"],
        filters: [{name: "GGUF models", extensions: ["gguf"]}]
    };
    const result = owner != null ? await dialog.showOpenDialog(owner, options) : await dialog.showOpenDialog(options);
    const modelPath = result.filePaths[0];
    if (result.canceled || modelPath == null)
        return;

    try {
        await engine.api.addModel({path: modelPath});
        engine.notifyModelsChanged();
    } catch (error) {
        const message = {type: "error" as const, message: "Could not add the model", detail: toErrorShape(error).message};
        await (owner != null ? dialog.showMessageBox(owner, message) : dialog.showMessageBox(message));
    }
}

function buildMenu(engine: EngineProcess): Menu {
    const isMac = process.platform === "darwin";
    const addModel: MenuItemConstructorOptions = {
        label: "Add Model…",
        accelerator: "CmdOrCtrl+O",
        click: () => void addModelFromDialog(engine).catch((error: unknown) => console.error("weft: adding a model failed:", error))
    };
    const template: MenuItemConstructorOptions[] = [
        ...(isMac ? [{role: "appMenu" as const}] : []),
        {label: "File", submenu: [addModel, {type: "separator"}, isMac ? {role: "close"} : {role: "quit"}]},
        {role: "editMenu"},
        {role: "viewMenu"},
        {role: "windowMenu"}
    ];
    return Menu.buildFromTemplate(template);
}
