/** The engine contract: the only module the renderer may import from main/. */
export * from "./errors.js";
export * from "./stats.js";
export * from "./chat.js";
export * from "./models.js";
export * from "./cache-warm.js";
export * from "./library.js";
export * from "./conversations.js";
export * from "./settings.js";
export * from "./cache.js";
export * from "./documents.js";
export * from "./downloads.js";
export * from "./hardware.js";
export * from "./shell.js";
export * from "./endpoints.js";
export * from "./wire.js";
export * from "./client.js";
export * from "./preload-api.js";
