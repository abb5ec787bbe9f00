#include "fused_blend.h"

#include <chrono>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "addon_handles.h"
#include "llama_functions.h"
#include "napi_args.h"
#include "pinned_buffer.h"
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
    int32_t deferred; // != 0: return once queued; selected/deviation are valid after llama_synchronize
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

// One decode of a run: tokens at positions, in segments of which segKeep[s] are selected.
struct BlendBatch {
    std::vector<int32_t> tokens, positions, segLen, segKeep;
    size_t nSel = 0;
};

// Where the decodes' selections (and deviations) land: pinned host memory, so the device copies them back while the
// host queues the next decode; shared by every call (its mutex held for a whole run), grown on demand.
struct BlendOutputs {
    std::mutex mutex;
    PinnedBuffer pinned;
};

BlendOutputs& blendOutputs() {
    static BlendOutputs outputs;
    return outputs;
}

// Runs a fused blend's decodes in order in one job: each is queued without waiting for the device (patch 0003's
// `deferred`), so llama.cpp's host work for the next decode overlaps the device's work on this one; one synchronize at
// the end, then the selections are read. With phases each decode waits for the device (the trace measures the wait).
class BlendWorker : public PromiseWorker {
    public:
        BlendWorker(Napi::Env env, const Napi::Object& context, const LlamaFunctions& functions, llama_context* ctx, llama_seq_id seqId,
                std::vector<BlendBatch> batches, int32_t checkLayer, bool wantDeviation, int32_t maskMode, bool wantPhases)
            : PromiseWorker(env, "WeftFusedBlendDecode"), functions(functions), ctx(ctx), seqId(seqId), batches(std::move(batches)),
              checkLayer(checkLayer), wantDeviation(wantDeviation), maskMode(maskMode), wantPhases(wantPhases),
              contextRef(Napi::Persistent(context)) {}

    protected:
        void Run() override {
            size_t total = 0;
            for (const BlendBatch& b : batches)
                total += b.nSel + (wantDeviation ? b.tokens.size() : 0);
            BlendOutputs& outputs = blendOutputs();
            std::lock_guard<std::mutex> lock(outputs.mutex);
            int32_t* out = reinterpret_cast<int32_t*>(outputs.pinned.reserve(functions, total * sizeof(int32_t), 64 * 1024));
            std::vector<int32_t> pageable;
            if (out == nullptr) { // no GPU host buffer type (a CPU build): the decodes are synchronous anyway
                pageable.assign(total, 0);
                out = pageable.data();
            }
            phases.assign(wantPhases ? batches.size() * kWeftPhases : 0, 0.0f);

            const auto startedAt = std::chrono::steady_clock::now();
            size_t at = 0;
            std::vector<std::pair<size_t, size_t>> where; // per batch: offset of its selection, of its deviation
            for (size_t index = 0; index < batches.size(); index++) {
                const BlendBatch& b = batches[index];
                const int32_t n = (int32_t) b.tokens.size();
                llama_batch batch = functions.llama_batch_init(n, 0, 1);
                for (int32_t i = 0; i < n; i++) {
                    batch.token[i] = b.tokens[i];
                    batch.pos[i] = b.positions[i];
                    batch.n_seq_id[i] = 1;
                    batch.seq_id[i][0] = seqId;
                    batch.logits[i] = 0;
                }
                batch.n_tokens = n;
                const size_t selAt = at, devAt = at + b.nSel;
                at += b.nSel + (wantDeviation ? (size_t) n : 0);
                where.emplace_back(selAt, devAt);
                WeftBlend blend{checkLayer, (int32_t) b.segLen.size(), b.segLen.data(), b.segKeep.data(), out + selAt,
                    wantDeviation ? reinterpret_cast<float*>(out + devAt) : nullptr, maskMode,
                    wantPhases ? phases.data() + index * kWeftPhases : nullptr, 1};
                const auto queuedAt = std::chrono::steady_clock::now();
                const int32_t code = blendDecodeFunction()(ctx, batch, &blend);
                hostMsEach.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - queuedAt).count());
                functions.llama_batch_free(batch);
                if (code != 0) {
                    functions.llama_synchronize(ctx); // nothing of this run may still write into the shared buffer
                    throw std::runtime_error("fused blend decode " + std::to_string(index + 1) + " of " + std::to_string(batches.size()) +
                        ": " + describe(code) + " [code " + std::to_string(code) + "]");
                }
            }
            const auto syncAt = std::chrono::steady_clock::now();
            functions.llama_synchronize(ctx);
            const auto doneAt = std::chrono::steady_clock::now();
            syncMs = std::chrono::duration<double, std::milli>(doneAt - syncAt).count();
            decodeMs = std::chrono::duration<double, std::milli>(doneAt - startedAt).count();
            for (size_t index = 0; index < batches.size(); index++) {
                selected.emplace_back(out + where[index].first, out + where[index].first + batches[index].nSel);
                if (wantDeviation) {
                    const float* dev = reinterpret_cast<const float*>(out + where[index].second);
                    deviation.emplace_back(dev, dev + batches[index].tokens.size());
                }
            }
        }

        void OnOK() override {
            Napi::Env env = Env();
            Napi::Object result = Napi::Object::New(env);
            Napi::Array sel = Napi::Array::New(env, selected.size());
            for (size_t i = 0; i < selected.size(); i++) {
                Napi::Int32Array one = Napi::Int32Array::New(env, selected[i].size());
                std::copy(selected[i].begin(), selected[i].end(), one.Data());
                sel.Set((uint32_t) i, one);
            }
            result.Set("selected", sel);
            if (wantDeviation) {
                Napi::Array dev = Napi::Array::New(env, deviation.size());
                for (size_t i = 0; i < deviation.size(); i++) {
                    Napi::Float32Array one = Napi::Float32Array::New(env, deviation[i].size());
                    std::copy(deviation[i].begin(), deviation[i].end(), one.Data());
                    dev.Set((uint32_t) i, one);
                }
                result.Set("deviation", dev);
            } else
                result.Set("deviation", env.Null());
            result.Set("decodeMs", Napi::Number::New(env, decodeMs));
            result.Set("syncMs", Napi::Number::New(env, syncMs));
            Napi::Float64Array each = Napi::Float64Array::New(env, hostMsEach.size());
            std::copy(hostMsEach.begin(), hostMsEach.end(), each.Data());
            result.Set("hostMsEach", each);
            if (wantPhases) {
                Napi::Array all = Napi::Array::New(env, batches.size());
                for (size_t i = 0; i < batches.size(); i++) {
                    Napi::Float32Array one = Napi::Float32Array::New(env, kWeftPhases);
                    std::copy(phases.begin() + i * kWeftPhases, phases.begin() + (i + 1) * kWeftPhases, one.Data());
                    all.Set((uint32_t) i, one);
                }
                result.Set("phaseMs", all);
            }
            deferred.Resolve(result);
        }

    private:
        const LlamaFunctions& functions;
        llama_context* ctx;
        llama_seq_id seqId;
        std::vector<BlendBatch> batches;
        int32_t checkLayer;
        bool wantDeviation;
        int32_t maskMode;
        bool wantPhases;
        Napi::ObjectReference contextRef;
        std::vector<std::vector<int32_t>> selected;
        std::vector<std::vector<float>> deviation;
        std::vector<float> phases;
        std::vector<double> hostMsEach;
        double decodeMs = 0, syncMs = 0;
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
            throw Napi::TypeError::New(env, "spec must be an object {batches, checkLayer, deviation?, mask?, phases?}");
        Napi::Object spec = info[2].As<Napi::Object>();
        if (!spec.Get("batches").IsArray() || spec.Get("batches").As<Napi::Array>().Length() == 0)
            throw Napi::TypeError::New(env, "spec.batches must be a non-empty array of {tokens, positions, segLen, segKeep}");
        Napi::Array list = spec.Get("batches").As<Napi::Array>();
        std::vector<BlendBatch> batches;
        for (uint32_t i = 0; i < list.Length(); i++) {
            if (!list.Get(i).IsObject())
                throw Napi::TypeError::New(env, "spec.batches[" + std::to_string(i) + "] must be an object");
            Napi::Object one = list.Get(i).As<Napi::Object>();
            BlendBatch b;
            b.tokens = int32Vector(one.Get("tokens"), "tokens");
            b.positions = int32Vector(one.Get("positions"), "positions");
            b.segLen = int32Vector(one.Get("segLen"), "segLen");
            b.segKeep = int32Vector(one.Get("segKeep"), "segKeep");
            if (b.tokens.empty() || b.positions.size() != b.tokens.size())
                throw Napi::RangeError::New(env, "spec.batches[" + std::to_string(i) + "]: tokens must be non-empty and positions as long");
            if (b.segLen.empty() || b.segKeep.size() != b.segLen.size())
                throw Napi::RangeError::New(env, "spec.batches[" + std::to_string(i) + "]: segLen must be non-empty and segKeep as long");
            if ((int64_t) b.tokens.size() > (int64_t) functions.llama_n_batch(ctx))
                throw Napi::RangeError::New(env, "spec.batches[" + std::to_string(i) + "]: " + std::to_string(b.tokens.size()) +
                    " tokens exceed the context's batch size " + std::to_string(functions.llama_n_batch(ctx)));
            int64_t lenSum = 0;
            for (size_t s = 0; s < b.segLen.size(); s++) {
                if (b.segLen[s] <= 0 || b.segKeep[s] < 0 || b.segKeep[s] > b.segLen[s])
                    throw Napi::RangeError::New(env, "spec.batches[" + std::to_string(i) + "]: each segment needs 0 <= segKeep <= segLen and segLen > 0");
                lenSum += b.segLen[s];
                b.nSel += (size_t) b.segKeep[s];
            }
            if (lenSum != (int64_t) b.tokens.size())
                throw Napi::RangeError::New(env, "spec.batches[" + std::to_string(i) + "]: segLen must sum to the token count");
            batches.push_back(std::move(b));
        }
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
        auto* worker = new BlendWorker(env, info[0].As<Napi::Object>(), functions, ctx, seqId, std::move(batches), checkLayer,
            wantDeviation, maskMode, wantPhases);
        Napi::Promise promise = worker->Promise();
        worker->Queue();
        return promise;
    });
}

Napi::Value FusedBlendSupported(const Napi::CallbackInfo& info) {
    const LlamaFunctions& functions = getLlamaFunctions();
    return Napi::Boolean::New(info.Env(), functions.missing.empty() && blendDecodeFunction() != nullptr);
}
