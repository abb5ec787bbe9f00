#pragma once

#include <napi.h>

/** Per-env state: the cache of private capture contexts. Installed as the addon's instance data. */
class LayerCaptureRegistry;
LayerCaptureRegistry* createLayerCaptureRegistry();
void destroyLayerCaptureRegistry(LayerCaptureRegistry* registry);

/** captureLayerKV(modelHandle, tokens, layer, options): Promise<{k, v, nTokens, nEmbdK, nEmbdV, ...}> */
Napi::Value CaptureLayerKV(const Napi::CallbackInfo& info);

/** releaseLayerCaptureContexts(modelHandle?): number — frees the cached private contexts (of one model, or all). */
Napi::Value ReleaseLayerCaptureContexts(const Napi::CallbackInfo& info);
