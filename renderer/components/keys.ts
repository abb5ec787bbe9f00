/** The modifier shown in shortcut hints: ⌘ on Apple platforms, Ctrl elsewhere. */
export const shortcutKey = typeof navigator !== "undefined" && /Mac|iPhone|iPad/.test(navigator.platform) ? "⌘" : "Ctrl";
