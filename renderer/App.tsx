import {useEffect} from "react";
import {CacheView} from "./components/cache/CacheView.js";
import {ChatView} from "./components/ChatView.js";
import {Composer} from "./components/Composer.js";
import {ConversationList} from "./components/conversations/ConversationList.js";
import {Header} from "./components/Header.js";
import {LibraryPanel} from "./components/LibraryPanel.js";
import {ModelsView} from "./components/models/ModelsView.js";
import {NotAuthorized} from "./components/NotAuthorized.js";
import {Notice} from "./components/Notice.js";
import {SettingsView} from "./components/settings/SettingsView.js";
import {DocumentViewer} from "./components/sources/DocumentViewer.js";
import {useTheme} from "./components/theme.js";
import {useApp} from "./store/index.js";

export function App() {
    const connection = useApp((state) => state.connection);
    const view = useApp((state) => state.view);
    const cancel = useApp((state) => state.cancel);
    const toggleLibrary = useApp((state) => state.toggleLibrary);
    const newChat = useApp((state) => state.newChat);
    useTheme();

    // Escape stops the streaming answer wherever the focus is (the library panel and the document viewer take it
    // first, to close); Ctrl+L (Cmd+L on macOS) shows or hides the library; Ctrl+K (Cmd+K) starts a new chat.
    useEffect(() => {
        const onKeyDown = (event: KeyboardEvent) => {
            if (event.isComposing)
                return;
            const command = (event.ctrlKey || event.metaKey) && !event.altKey && !event.shiftKey;
            if (event.key === "Escape")
                cancel();
            else if (command && event.key.toLowerCase() === "l") {
                event.preventDefault();
                toggleLibrary();
            } else if (command && event.key.toLowerCase() === "k") {
                event.preventDefault();
                newChat();
            }
        };
        window.addEventListener("keydown", onKeyDown);
        return () => window.removeEventListener("keydown", onKeyDown);
    }, [cancel, toggleLibrary, newChat]);

    if (connection.kind === "unauthorized")
        return <NotAuthorized reason={connection.reason} />;

    return (
        <div className="app">
            <Header />
            <Notice />
            <div className="app-body">
                <ConversationList />
                {view === "chat" && (
                    <div className="chat-pane">
                        <ChatView />
                        <Composer />
                    </div>
                )}
                {view === "models" && <div className="view-pane"><ModelsView /></div>}
                {view === "cache" && <div className="view-pane"><CacheView /></div>}
                {view === "settings" && <div className="view-pane"><SettingsView /></div>}
                <LibraryPanel />
            </div>
            <DocumentViewer />
        </div>
    );
}
