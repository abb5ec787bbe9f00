#include "decode_settings.h"

#include <string>

#include "addon_handles.h"
#include "llama_functions.h"

namespace {

// Patches 0008's and 0009's functions, declared here because an unpatched llama.h (the default install) lacks them.
using SetMaskModeFn = int32_t (*)(llama_context*, int32_t);
using SetUpdateReserveFn = int32_t (*)(llama_context*, int32_t);

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

Napi::Value SetUpdateReserve(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    llama_context* ctx = contextOfHandle(info[0], "context");
    if (!info[1].IsBoolean())
        throw Napi::TypeError::New(env, "reserve must be a boolean");
    auto set = reinterpret_cast<SetUpdateReserveFn>(findOptionalLlamaFunction("llama_weft_set_update_reserve"));
    if (set == nullptr)
        return env.Null();
    return Napi::Boolean::New(env, set(ctx, info[1].As<Napi::Boolean>().Value() ? 1 : 0) != 0);
}
