// Reaching node-llama-cpp's native objects: `LlamaContext._ctx` (an AddonContext) and `LlamaModel._model` (an
// AddonModel), unwrapped with node-llama-cpp's own headers (llama/addon/*.h of the installed version, so the layout
// matches its prebuilt binary).
#pragma once

#include <napi.h>

#include "llama.h"

class AddonContext;
class AddonModel;

/** The live llama_context behind a `LlamaContext._ctx`; throws a Napi::Error when it is not one or is disposed. */
llama_context* contextOfHandle(const Napi::Value& handle, const char* argumentName);

/** The live llama_model behind a `LlamaModel._model`; throws a Napi::Error when it is not one or is disposed. */
llama_model* modelOfHandle(const Napi::Value& handle, const char* argumentName);

/** Whether a `LlamaModel._model` object (held weakly by the caller) is still loaded. Never throws. */
bool isModelHandleAlive(Napi::Env env, const Napi::Object& handle);
