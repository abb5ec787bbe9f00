#include "mask_mode.h"

#include <string>

#include "addon_handles.h"
#include "llama_functions.h"

namespace {

// Patch 0008's function, declared here because an unpatched llama.h (the default install) lacks it.
using SetMaskModeFn = int32_t (*)(llama_context*, int32_t);

} // namespace

Napi::Value SetDecodeMaskMode(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    llama_context* ctx = contextOfHandle(info[0], "context");
    const std::string mode = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
    int32_t code; // llama_weft_mask_mode
    if (mode == "auto")
        code = 0;
    else if (mode == "host")
        code = 1;
    else if (mode == "graph")
        code = 2;
    else
        throw Napi::TypeError::New(env, "mode must be \"auto\", \"host\" or \"graph\"");
    // looked up on each call (a context's mode is set once): node-llama-cpp may load its library after the addon
    auto set = reinterpret_cast<SetMaskModeFn>(findOptionalLlamaFunction("llama_weft_set_mask_mode"));
    if (set == nullptr)
        return Napi::Boolean::New(env, false);
    if (set(ctx, code) != 0)
        throw Napi::Error::New(env, "llama_weft_set_mask_mode refused mode " + mode);
    return Napi::Boolean::New(env, true);
}
