// weft_native: what node-llama-cpp 3.22.1 does not expose, on the objects it already created.
//   getSequenceState(LlamaContext._ctx, seqId): Promise<Buffer>
//   setSequenceState(LlamaContext._ctx, seqId, blob): Promise<number>
//   spliceSequenceState(LlamaContext._ctx, seqId, spec): Promise<{bytesRead, blobBytes, buildMs, setMs, pinned}>
//   releasePinnedScratch(): number
//   residentKvUpload(LlamaContext._ctx, seqId, spec): Promise<handle>; residentKvRelease(handle): number;
//   residentKvSupported(): boolean (the build has Weft's patch 0002)
//   kvDeviation(spec): Promise<Float32Array>
//   captureLayerKV(LlamaModel._model, tokens, layer, options): Promise<{k, v, nTokens, nEmbdK, nEmbdV, ...}>
//   releaseLayerCaptureContexts(LlamaModel._model?): number
//   fusedBlendDecode(LlamaContext._ctx, seqId, spec): Promise<{selected, deviation, decodeMs}>; fusedBlendSupported(): boolean (patch 0003)
//   setDecodeMaskMode(LlamaContext._ctx, mode): boolean (patch 0008: where ordinary decodes build their causal mask)
//   setUpdateReserve(LlamaContext._ctx, reserve): boolean | null (patch 0009: the worst-case reserve after a K-shift)
//   llamaFunctionsAvailable(): {ok, missing, library}
//   kvCodecEncode / kvCodecDecode / kvCodecDecodeSync / kvCodecLevels: the KV codec (kv_codec.h)
// The TypeScript side is main/engine/native/native-addon.ts.
#include <napi.h>

#include "fused_blend.h"
#include "half.h"
#include "kv_codec_addon.h"
#include "kv_deviation.h"
#include "kv_resident.h"
#include "kv_splice.h"
#include "layer_capture.h"
#include "llama_functions.h"
#include "decode_settings.h"
#include "sequence_state.h"
#ifdef WEFT_DEBUG_DIAGNOSTICS
#include "stack_dump.h"
#endif

namespace {

void finalizeRegistry(Napi::Env, LayerCaptureRegistry* registry) {
    destroyLayerCaptureRegistry(registry);
}

Napi::Value LlamaFunctionsAvailable(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const LlamaFunctions& functions = getLlamaFunctions();
    Napi::Array missing = Napi::Array::New(env, functions.missing.size());
    for (size_t i = 0; i < functions.missing.size(); i++)
        missing.Set((uint32_t) i, Napi::String::New(env, functions.missing[i]));

    Napi::Object result = Napi::Object::New(env);
    result.Set("ok", Napi::Boolean::New(env, functions.missing.empty()));
    result.Set("missing", missing);
    result.Set("library", functions.library.empty() ? env.Null() : Napi::String::New(env, functions.library));
    return result;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
#ifdef WEFT_DEBUG_DIAGNOSTICS
    installStackDumper();
#endif
#ifdef WEFT_HAVE_F16C_DISPATCH
    // The F16C check reads WEFT_NO_F16C (a test switch) once, here at load, not on a question's worker thread.
    (void) weft_half::cpuHasF16c();
#endif
    env.SetInstanceData<LayerCaptureRegistry, finalizeRegistry>(createLayerCaptureRegistry());
    exports.Set("getSequenceState", Napi::Function::New(env, GetSequenceState, "getSequenceState"));
    exports.Set("setSequenceState", Napi::Function::New(env, SetSequenceState, "setSequenceState"));
    exports.Set("spliceSequenceState", Napi::Function::New(env, SpliceSequenceState, "spliceSequenceState"));
    exports.Set("kvDeviation", Napi::Function::New(env, KvDeviation, "kvDeviation"));
    exports.Set("releasePinnedScratch", Napi::Function::New(env, ReleasePinnedScratch, "releasePinnedScratch"));
    exports.Set("residentKvUpload", Napi::Function::New(env, ResidentKvUpload, "residentKvUpload"));
    exports.Set("residentKvRelease", Napi::Function::New(env, ResidentKvRelease, "residentKvRelease"));
    exports.Set("residentKvSupported", Napi::Function::New(env, ResidentKvSupported, "residentKvSupported"));
    exports.Set("captureLayerKV", Napi::Function::New(env, CaptureLayerKV, "captureLayerKV"));
    exports.Set("releaseLayerCaptureContexts", Napi::Function::New(env, ReleaseLayerCaptureContexts, "releaseLayerCaptureContexts"));
    exports.Set("kvCodecEncode", Napi::Function::New(env, KvCodecEncode, "kvCodecEncode"));
    exports.Set("kvCodecDecode", Napi::Function::New(env, KvCodecDecode, "kvCodecDecode"));
    exports.Set("kvCodecDecodeSync", Napi::Function::New(env, KvCodecDecodeSync, "kvCodecDecodeSync"));
    exports.Set("kvCodecPeek", Napi::Function::New(env, KvCodecPeek, "kvCodecPeek"));
    exports.Set("kvCodecLevels", Napi::Function::New(env, KvCodecLevels, "kvCodecLevels"));
    exports.Set("fusedBlendDecode", Napi::Function::New(env, FusedBlendDecode, "fusedBlendDecode"));
    exports.Set("fusedBlendSupported", Napi::Function::New(env, FusedBlendSupported, "fusedBlendSupported"));
    exports.Set("setDecodeMaskMode", Napi::Function::New(env, SetDecodeMaskMode, "setDecodeMaskMode"));
    exports.Set("setUpdateReserve", Napi::Function::New(env, SetUpdateReserve, "setUpdateReserve"));
    exports.Set("llamaFunctionsAvailable", Napi::Function::New(env, LlamaFunctionsAvailable, "llamaFunctionsAvailable"));
    return exports;
}

} // namespace

NODE_API_MODULE(weft_native, Init)
