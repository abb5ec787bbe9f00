#include "fused_blend.h"

#include <chrono>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "addon_handles.h"
#include "llama_functions.h"
#include "napi_args.h"
#include "promise_worker.h"

namespace {

// Patch 0003's struct and function, declared here because an unpatched llama.h (the default install) lacks them.
struct WeftBlend {
    int32_t checkLayer;
    int32_t nSeg;
    const int32_t* segLen;
    const int32_t* segKeep;
    int32_t* selected;
    float* deviation;
    int32_t maskMode; // llama_weft_mask_mode: 0 auto, 1 host, 2 graph
    float* phaseMs;   // out [kWeftPhases] or null: the decode's host phases (a diagnostic the benchmark asks for)
};
constexpr size_t kWeftPhases = 8; // LLAMA_WEFT_PHASES
using BlendDecodeFn = int32_t (*)(llama_context*, llama_batch, const WeftBlend*);

BlendDecodeFn blendDecodeFunction() {
    static std::mutex mutex;
    static BlendDecodeFn found = nullptr;
    std::lock_guard<std::mutex> lock(mutex);
    if (found == nullptr)
        found = reinterpret_cast<BlendDecodeFn>(findOptionalLlamaFunction("llama_weft_blend_decode"));
    return found;
}

std::string describe(int32_t code) {
    switch (code) {
        case 1: return "no KV cache slot for the batch";
        case 2: return "aborted";
        case -10: return "flash attention is off (the fused blend scatters V rows, which needs the untransposed V of flash attention)";
        case -11: return "the context's memory is not a plain KV cache with unquantized K (sliding-window or quantized caches cannot blend)";
        case -12: return "this model architecture has no fused-blend hook in its graph";
        case -13: return "bad batch (one sequence, strictly increasing positions, no outputs, at most the context's ubatch size)";
        case -14: return "bad segments, check layer or mask mode";
        default: return "llama_decode failed (" + std::to_string(code) + ")";
    }
}

std::vector<int32_t> int32Vector(const Napi::Value& value, const char* name) {
    if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
        throw Napi::TypeError::New(value.Env(), std::string(name) + " must be an Int32Array");
    Napi::Int32Array array = value.As<Napi::Int32Array>();
    return std::vector<int32_t>(array.Data(), array.Data() + array.ElementLength());
}

class BlendWorker : public PromiseWorker {
    public:
        BlendWorker(Napi::Env env, const Napi::Object& context, const LlamaFunctions& functions, llama_context* ctx, llama_seq_id seqId,
                std::vector<int32_t> tokens, std::vector<int32_t> positions, std::vector<int32_t> segLen, std::vector<int32_t> segKeep,
                int32_t checkLayer, bool wantDeviation, int32_t maskMode, bool wantPhases)
            : PromiseWorker(env, "WeftFusedBlendDecode"), functions(functions), ctx(ctx), seqId(seqId), tokens(std::move(tokens)),
              positions(std::move(positions)), segLen(std::move(segLen)), segKeep(std::move(segKeep)), checkLayer(checkLayer),
              wantDeviation(wantDeviation), maskMode(maskMode), wantPhases(wantPhases), contextRef(Napi::Persistent(context)) {}

    protected:
        void Run() override {
            size_t nSel = 0;
            for (int32_t keep : segKeep)
                nSel += (size_t) keep;
            selected.assign(nSel, -1);
            if (wantDeviation)
                deviation.assign(tokens.size(), 0.0f);
            if (wantPhases)
                phases.assign(kWeftPhases, 0.0f);

            const int32_t n = (int32_t) tokens.size();
            llama_batch batch = functions.llama_batch_init(n, 0, 1);
            for (int32_t i = 0; i < n; i++) {
                batch.token[i] = tokens[i];
                batch.pos[i] = positions[i];
                batch.n_seq_id[i] = 1;
                batch.seq_id[i][0] = seqId;
                batch.logits[i] = 0;
            }
            batch.n_tokens = n;
            WeftBlend blend{checkLayer, (int32_t) segLen.size(), segLen.data(), segKeep.data(), selected.data(),
                wantDeviation ? deviation.data() : nullptr, maskMode, wantPhases ? phases.data() : nullptr};
            const auto startedAt = std::chrono::steady_clock::now();
            const int32_t code = blendDecodeFunction()(ctx, batch, &blend);
            decodeMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - startedAt).count();
            functions.llama_batch_free(batch);
            if (code != 0)
                throw std::runtime_error("fused blend decode: " + describe(code) + " [code " + std::to_string(code) + "]");
        }

        void OnOK() override {
            Napi::Env env = Env();
            Napi::Object result = Napi::Object::New(env);
            Napi::Int32Array sel = Napi::Int32Array::New(env, selected.size());
            std::copy(selected.begin(), selected.end(), sel.Data());
            result.Set("selected", sel);
            if (wantDeviation) {
                Napi::Float32Array dev = Napi::Float32Array::New(env, deviation.size());
                std::copy(deviation.begin(), deviation.end(), dev.Data());
                result.Set("deviation", dev);
            } else
                result.Set("deviation", env.Null());
            result.Set("decodeMs", Napi::Number::New(env, decodeMs));
            if (wantPhases) {
                Napi::Float32Array phaseMs = Napi::Float32Array::New(env, phases.size());
                std::copy(phases.begin(), phases.end(), phaseMs.Data());
                result.Set("phaseMs", phaseMs);
            }
            deferred.Resolve(result);
        }

    private:
        const LlamaFunctions& functions;
        llama_context* ctx;
        llama_seq_id seqId;
        std::vector<int32_t> tokens, positions, segLen, segKeep;
        int32_t checkLayer;
        bool wantDeviation;
        int32_t maskMode;
        bool wantPhases;
        Napi::ObjectReference contextRef;
        std::vector<int32_t> selected;
        std::vector<float> deviation;
        std::vector<float> phases;
        double decodeMs = 0;
};

} // namespace

Napi::Value FusedBlendDecode(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return promiseOf(env, [&]() -> Napi::Value {
        llama_context* ctx = contextOfHandle(info[0], "context");
        const LlamaFunctions& functions = requireLlamaFunctions();
        if (blendDecodeFunction() == nullptr)
            throw Napi::Error::New(env, "this llama.cpp build lacks Weft's patch 0003 (llama_weft_blend_decode)");
        const llama_seq_id seqId = (llama_seq_id) integerArgument(info[1], "seqId", 0, (int64_t) functions.llama_n_seq_max(ctx) - 1);
        if (!info[2].IsObject())
            throw Napi::TypeError::New(env, "spec must be an object {tokens, positions, segLen, segKeep, checkLayer, deviation?}");
        Napi::Object spec = info[2].As<Napi::Object>();
        std::vector<int32_t> tokens = int32Vector(spec.Get("tokens"), "spec.tokens");
        std::vector<int32_t> positions = int32Vector(spec.Get("positions"), "spec.positions");
        std::vector<int32_t> segLen = int32Vector(spec.Get("segLen"), "spec.segLen");
        std::vector<int32_t> segKeep = int32Vector(spec.Get("segKeep"), "spec.segKeep");
        if (tokens.empty() || positions.size() != tokens.size())
            throw Napi::RangeError::New(env, "spec.tokens must be non-empty and spec.positions as long");
        if (segLen.empty() || segKeep.size() != segLen.size())
            throw Napi::RangeError::New(env, "spec.segLen must be non-empty and spec.segKeep as long");
        if ((int64_t) tokens.size() > (int64_t) functions.llama_n_batch(ctx))
            throw Napi::RangeError::New(env, std::to_string(tokens.size()) + " tokens exceed the context's batch size " +
                std::to_string(functions.llama_n_batch(ctx)));
        const int32_t checkLayer = (int32_t) integerArgument(spec.Get("checkLayer"), "spec.checkLayer", 0,
            (int64_t) functions.llama_model_n_layer(functions.llama_get_model(ctx)) - 1);
        const bool wantDeviation = spec.Has("deviation") && spec.Get("deviation").ToBoolean().Value();
        const bool wantPhases = spec.Has("phases") && spec.Get("phases").ToBoolean().Value();
        int32_t maskMode = 0;
        if (spec.Has("mask") && !spec.Get("mask").IsUndefined()) {
            const std::string mask = spec.Get("mask").IsString() ? spec.Get("mask").As<Napi::String>().Utf8Value() : "";
            if (mask == "host")
                maskMode = 1;
            else if (mask == "graph")
                maskMode = 2;
            else if (mask != "auto")
                throw Napi::TypeError::New(env, "spec.mask must be \"auto\", \"host\" or \"graph\"");
        }
        auto* worker = new BlendWorker(env, info[0].As<Napi::Object>(), functions, ctx, seqId, std::move(tokens), std::move(positions),
            std::move(segLen), std::move(segKeep), checkLayer, wantDeviation, maskMode, wantPhases);
        Napi::Promise promise = worker->Promise();
        worker->Queue();
        return promise;
    });
}

Napi::Value FusedBlendSupported(const Napi::CallbackInfo& info) {
    const LlamaFunctions& functions = getLlamaFunctions();
    return Napi::Boolean::New(info.Env(), functions.missing.empty() && blendDecodeFunction() != nullptr);
}
