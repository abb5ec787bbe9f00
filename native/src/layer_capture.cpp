// captureLayerKV: layer-N K and V for a list of tokens (what is captured and how: capture_graph.h), computed on a
// private llama_context (same llama_model as node-llama-cpp's, created here with cb_eval set, since cb_eval can only
// be set at creation) and cached per model + settings.
#include "layer_capture.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "ggml.h"

#include "addon_handles.h"
#include "capture_graph.h"
#include "llama_functions.h"
#include "napi_args.h"
#include "promise_worker.h"

namespace {

constexpr size_t maxCachedCaptureContexts = 4;

struct CaptureSettings {
    uint32_t contextSize;
    uint32_t batchSize;
    int32_t threads;
    llama_flash_attn_type flashAttention;

    bool operator==(const CaptureSettings& other) const {
        return contextSize == other.contextSize && batchSize == other.batchSize && threads == other.threads &&
            flashAttention == other.flashAttention;
    }
};

class CaptureContext {
    public:
        CaptureContext(const LlamaFunctions& functions, llama_model* model, CaptureSettings settings)
            : functions(functions), model(model), settings(settings) {}

        ~CaptureContext() {
            // A context whose model is already freed must not be freed (its destructor reads the model): leak it.
            if (ctx != nullptr && !leak.load())
                functions.llama_free(ctx);
            staging.release(functions);
        }

        const LlamaFunctions& functions;
        llama_model* const model;
        const CaptureSettings settings;
        std::mutex mutex;             // one capture at a time per context
        llama_context* ctx = nullptr; // created on first use, in the worker
        CaptureRun* active = nullptr;
        std::atomic<bool> leak{false};
        // Pinned host memory the K/V are read into from a GPU (a read into pageable memory is several times slower).
        PinnedBuffer staging;
};

} // namespace

struct CaptureEntry {
    std::shared_ptr<CaptureContext> capture;
    Napi::ObjectReference modelHandle;  // weak: an entry whose model is collected or disposed is dropped
    uint64_t lastUse = 0;
};

class LayerCaptureRegistry {
    public:
        std::vector<CaptureEntry> entries;  // touched on the JS thread only
        uint64_t clock = 0;
};

LayerCaptureRegistry* createLayerCaptureRegistry() {
    return new LayerCaptureRegistry();
}

void destroyLayerCaptureRegistry(LayerCaptureRegistry* registry) {
    // At env teardown node-llama-cpp may have freed the models already: leak the contexts rather than risk it.
    for (CaptureEntry& entry : registry->entries)
        entry.capture->leak.store(true);
    delete registry;
}

namespace {

std::string decodeErrorMessage(int32_t code, size_t start, size_t count) {
    std::string where = "llama_decode of tokens " + std::to_string(start) + ".." + std::to_string(start + count - 1) +
        " returned " + std::to_string(code);
    switch (code) {
        case 1:
            return where + ": no KV cache slot (options.contextSize is too small for the tokens?)";
        case 2:
            return where + ": aborted";
        case -1:
            return where + ": invalid batch (a token id outside the vocabulary, or positions llama.cpp rejects: " +
                "with stock llama.cpp they must be consecutive, each batchSize piece continuing from the previous " +
                "piece's last position + 1)";
        default:
            return where + ": fatal decode error (see llama.cpp's log)";
    }
}

class CaptureLayerWorker : public PromiseWorker {
    public:
        CaptureLayerWorker(Napi::Env env, const Napi::Object& modelHandle, std::shared_ptr<CaptureContext> capture,
                std::vector<llama_token> tokens, std::vector<llama_pos> positions, int32_t layer)
            : PromiseWorker(env, "WeftCaptureLayerKV"), modelRef(Napi::Persistent(modelHandle)),
              capture(std::move(capture)), tokens(std::move(tokens)), positions(std::move(positions)) {
            run.layer = layer;
        }

    protected:
        void Run() override {
            {
                std::lock_guard<std::mutex> lock(capture->mutex);
                try {
                    capture->active = &run;
                    decodeAll();
                } catch (...) {
                    finish();
                    throw;
                }
                finish();
            }
            // Drop our reference outside the lock: if the entry was released meanwhile, this frees the context.
            capture.reset();
        }

        void OnOK() override {
            Napi::Env env = Env();
            Napi::Float32Array k = Napi::Float32Array::New(env, run.k.size());
            std::memcpy(k.Data(), run.k.data(), run.k.size() * sizeof(float));
            Napi::Float32Array v = Napi::Float32Array::New(env, run.v.size());
            std::memcpy(v.Data(), run.v.data(), run.v.size() * sizeof(float));

            Napi::Object result = Napi::Object::New(env);
            result.Set("k", k);
            result.Set("v", v);
            result.Set("nTokens", Napi::Number::New(env, (double) tokens.size()));
            result.Set("nEmbdK", Napi::Number::New(env, (double) nEmbdK));
            result.Set("nEmbdV", Napi::Number::New(env, (double) nEmbdV));
            result.Set("layer", Napi::Number::New(env, run.layer));
            result.Set("kTensor", Napi::String::New(env, run.kSource));
            result.Set("vTensor", Napi::String::New(env, run.vSource));
            result.Set("decodeMs", Napi::Number::New(env, run.decodeMs));
            result.Set("copyMs", Napi::Number::New(env, run.copyMs));
            result.Set("decodes", Napi::Number::New(env, run.decodes));
            deferred.Resolve(result);
        }

    private:
        Napi::ObjectReference modelRef;  // keeps the AddonModel from being collected meanwhile
        std::shared_ptr<CaptureContext> capture;
        std::vector<llama_token> tokens;
        std::vector<llama_pos> positions;
        CaptureRun run;
        size_t nEmbdK = 0;
        size_t nEmbdV = 0;
        llama_batch batch{};
        bool hasBatch = false;

        void ensureContext() {
            if (capture->ctx != nullptr)
                return;
            const LlamaFunctions& functions = capture->functions;
            llama_context_params params = functions.llama_context_default_params();
            params.n_ctx = capture->settings.contextSize;
            params.n_batch = capture->settings.batchSize;
            params.n_ubatch = capture->settings.batchSize;
            params.n_seq_max = 1;
            params.n_threads = capture->settings.threads;
            params.n_threads_batch = capture->settings.threads;
            params.flash_attn_type = capture->settings.flashAttention;
            params.cb_eval = captureEvalCallback;
            params.cb_eval_user_data = &capture->active;
            params.embeddings = false;
            params.no_perf = true;
            params.kv_unified = true;
            capture->ctx = functions.llama_init_from_model(capture->model, params);
            if (capture->ctx == nullptr)
                throw std::runtime_error("llama_init_from_model failed to create the capture context (contextSize " +
                    std::to_string(capture->settings.contextSize) + "; out of memory? see llama.cpp's log)");
        }

        void decodeAll() {
            const LlamaFunctions& functions = capture->functions;
            run.functions = &functions;
            ensureContext();

            run.staging = &capture->staging;
            llama_memory_t memory = functions.llama_get_memory(capture->ctx);
            if (memory == nullptr)
                throw std::runtime_error("the model's context has no KV memory (an embedding-only model?)");
            // Metadata only (data=false): no memset of the whole cache per call. Stale cells are never attended to,
            // and they hold finite values from earlier captures (or the zeros of a fresh buffer).
            functions.llama_memory_clear(memory, false);

            const size_t perDecode = std::max<uint32_t>(1, functions.llama_n_batch(capture->ctx));
            batch = functions.llama_batch_init((int32_t) perDecode, 0, 1);
            hasBatch = true;

            for (size_t start = 0; start < tokens.size(); start += perDecode) {
                const size_t count = std::min(perDecode, tokens.size() - start);
                for (size_t i = 0; i < count; i++) {
                    batch.token[i] = tokens[start + i];
                    batch.pos[i] = positions[start + i];
                    batch.n_seq_id[i] = 1;
                    batch.seq_id[i][0] = 0;
                    batch.logits[i] = i + 1 == count;  // one output keeps llama_decode on its common path
                }
                batch.n_tokens = (int32_t) count;

                run.inLayer = run.kSeen = run.vSeen = run.finished = false;
                const size_t kBefore = run.k.size();
                const size_t vBefore = run.v.size();
                const auto decodeStarted = std::chrono::steady_clock::now();
                const int32_t code = functions.llama_decode(capture->ctx, batch);
                run.decodeMs += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - decodeStarted).count();
                run.decodes++;
                if (!run.error.empty())
                    throw std::runtime_error("capturing layer " + std::to_string(run.layer) + ": " + run.error);
                if (code != 0)
                    throw std::runtime_error(decodeErrorMessage(code, start, count));
                if (!run.kSeen || !run.vSeen)
                    throw std::runtime_error("layer " + std::to_string(run.layer) + " wrote no " +
                        (run.kSeen ? "V" : "K") + " into a KV cache tensor named cache_[kv]_l" + std::to_string(run.layer) +
                        " (a model whose layer shares another layer's cache, or has no V cache?)");

                const size_t kAdded = run.k.size() - kBefore;
                const size_t vAdded = run.v.size() - vBefore;
                if (kAdded % count != 0 || vAdded % count != 0)
                    throw std::runtime_error("captured K/V sizes (" + std::to_string(kAdded) + ", " + std::to_string(vAdded) +
                        " values) are not a multiple of the " + std::to_string(count) + " tokens decoded");
                if (start == 0) {
                    nEmbdK = kAdded / count;
                    nEmbdV = vAdded / count;
                    // Grown once to the final size instead of doubling (each doubling copied everything so far).
                    run.k.reserve(nEmbdK * tokens.size());
                    run.v.reserve(nEmbdV * tokens.size());
                } else if (nEmbdK != kAdded / count || nEmbdV != vAdded / count) {
                    throw std::runtime_error("captured K/V row widths changed between batches");
                }
            }
        }

        void finish() {
            capture->active = nullptr;
            if (hasBatch) {
                capture->functions.llama_batch_free(batch);
                hasBatch = false;
            }
            if (capture->ctx != nullptr) {
                llama_memory_t memory = capture->functions.llama_get_memory(capture->ctx);
                if (memory != nullptr)
                    capture->functions.llama_memory_clear(memory, false);
            }
        }
};

LayerCaptureRegistry& registryOf(Napi::Env env) {
    LayerCaptureRegistry* registry = env.GetInstanceData<LayerCaptureRegistry>();
    if (registry == nullptr)
        throw Napi::Error::New(env, "weft_native is not initialized");
    return *registry;
}

/** Drops entries whose model was collected or disposed (leaking their contexts: the model they read is gone). */
void purgeStaleEntries(Napi::Env env, LayerCaptureRegistry& registry) {
    auto& entries = registry.entries;
    for (auto it = entries.begin(); it != entries.end();) {
        Napi::Object handle = it->modelHandle.Value();
        if (handle.IsEmpty() || !isModelHandleAlive(env, handle)) {
            it->capture->leak.store(true);
            it = entries.erase(it);
        } else {
            ++it;
        }
    }
}

std::vector<llama_token> tokensArgument(const Napi::Value& value) {
    Napi::Env env = value.Env();
    if (!value.IsTypedArray())
        throw Napi::TypeError::New(env, "tokens must be a Uint32Array or Int32Array");
    Napi::TypedArray array = value.As<Napi::TypedArray>();
    std::vector<llama_token> tokens(array.ElementLength());
    if (array.TypedArrayType() == napi_uint32_array) {
        Napi::Uint32Array typed = value.As<Napi::Uint32Array>();
        for (size_t i = 0; i < tokens.size(); i++) {
            if (typed[i] > (uint32_t) INT32_MAX)
                throw Napi::RangeError::New(env, "tokens[" + std::to_string(i) + "] is not a valid token id");
            tokens[i] = (llama_token) typed[i];
        }
    } else if (array.TypedArrayType() == napi_int32_array) {
        Napi::Int32Array typed = value.As<Napi::Int32Array>();
        for (size_t i = 0; i < tokens.size(); i++)
            tokens[i] = typed[i];
    } else {
        throw Napi::TypeError::New(env, "tokens must be a Uint32Array or Int32Array");
    }
    if (tokens.empty())
        throw Napi::RangeError::New(env, "tokens is empty");
    return tokens;
}

Napi::Value optionOf(const Napi::Object& options, const char* name) {
    return options.Has(name) ? options.Get(name) : options.Env().Undefined();
}

} // namespace

Napi::Value CaptureLayerKV(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return promiseOf(env, [&]() -> Napi::Value {
        const LlamaFunctions& functions = requireLlamaFunctions();
        llama_model* model = modelOfHandle(info[0], "model handle");
        std::vector<llama_token> tokens = tokensArgument(info[1]);
        const int32_t layerCount = functions.llama_model_n_layer(model);
        const int32_t layer = (int32_t) integerArgument(info[2], "layer", 0, layerCount - 1);

        if (!info[3].IsObject())
            throw Napi::TypeError::New(env, "options must be an object {contextSize, threads, flashAttention?, batchSize?, positions?}");
        Napi::Object options = info[3].As<Napi::Object>();
        CaptureSettings settings{};
        settings.contextSize = (uint32_t) integerArgument(optionOf(options, "contextSize"), "options.contextSize", 1, 1 << 24);
        settings.threads = (int32_t) integerArgument(optionOf(options, "threads"), "options.threads", 1, 1024);
        // Like node-llama-cpp's own contexts: true, false or "auto" (the default; llama.cpp decides per device).
        Napi::Value flash = optionOf(options, "flashAttention");
        if (flash.IsBoolean())
            settings.flashAttention = flash.As<Napi::Boolean>().Value() ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
        else if (flash.IsUndefined() || (flash.IsString() && flash.As<Napi::String>().Utf8Value() == "auto"))
            settings.flashAttention = LLAMA_FLASH_ATTN_TYPE_AUTO;
        else
            throw Napi::TypeError::New(env, "options.flashAttention must be true, false or \"auto\"");
        Napi::Value batchSize = optionOf(options, "batchSize");
        settings.batchSize = batchSize.IsUndefined()
            ? std::min<uint32_t>(settings.contextSize, 512)
            : (uint32_t) integerArgument(batchSize, "options.batchSize", 1, settings.contextSize);
        if (tokens.size() > settings.contextSize)
            throw Napi::RangeError::New(env, std::to_string(tokens.size()) + " tokens do not fit options.contextSize " +
                std::to_string(settings.contextSize));

        std::vector<llama_pos> positions(tokens.size());
        Napi::Value explicitPositions = optionOf(options, "positions");
        if (explicitPositions.IsUndefined()) {
            for (size_t i = 0; i < positions.size(); i++)
                positions[i] = (llama_pos) i;
        } else {
            if (!explicitPositions.IsTypedArray() || explicitPositions.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
                throw Napi::TypeError::New(env, "options.positions must be an Int32Array");
            Napi::Int32Array typed = explicitPositions.As<Napi::Int32Array>();
            if (typed.ElementLength() != tokens.size())
                throw Napi::RangeError::New(env, "options.positions has " + std::to_string(typed.ElementLength()) +
                    " entries for " + std::to_string(tokens.size()) + " tokens");
            for (size_t i = 0; i < positions.size(); i++) {
                if (typed[i] < 0)
                    throw Napi::RangeError::New(env, "options.positions[" + std::to_string(i) + "] is negative");
                positions[i] = typed[i];
            }
        }

        LayerCaptureRegistry& registry = registryOf(env);
        purgeStaleEntries(env, registry);
        std::shared_ptr<CaptureContext> capture;
        for (CaptureEntry& entry : registry.entries) {
            if (entry.capture->model == model && entry.capture->settings == settings) {
                entry.lastUse = ++registry.clock;
                capture = entry.capture;
                break;
            }
        }
        if (capture == nullptr) {
            if (registry.entries.size() >= maxCachedCaptureContexts) {
                auto oldest = std::min_element(registry.entries.begin(), registry.entries.end(),
                    [](const CaptureEntry& a, const CaptureEntry& b) { return a.lastUse < b.lastUse; });
                registry.entries.erase(oldest);  // freed now, or by its running capture when that ends
            }
            CaptureEntry entry;
            entry.capture = std::make_shared<CaptureContext>(functions, model, settings);
            entry.modelHandle = Napi::Weak(info[0].As<Napi::Object>());
            entry.lastUse = ++registry.clock;
            capture = entry.capture;
            registry.entries.push_back(std::move(entry));
        }

        auto* worker = new CaptureLayerWorker(env, info[0].As<Napi::Object>(), capture, std::move(tokens),
            std::move(positions), layer);
        Napi::Promise promise = worker->Promise();
        worker->Queue();
        return promise;
    });
}

Napi::Value ReleaseLayerCaptureContexts(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    LayerCaptureRegistry& registry = registryOf(env);
    const bool all = info.Length() == 0 || info[0].IsUndefined() || info[0].IsNull();
    if (!all && !info[0].IsObject())
        throw Napi::TypeError::New(env, "releaseLayerCaptureContexts takes a model handle (LlamaModel._model) or nothing");

    uint32_t released = 0;
    auto& entries = registry.entries;
    for (auto it = entries.begin(); it != entries.end();) {
        Napi::Object handle = it->modelHandle.Value();
        const bool alive = !handle.IsEmpty() && isModelHandleAlive(env, handle);
        const bool matches = all || (!handle.IsEmpty() && handle.StrictEquals(info[0]));
        if (matches || !alive) {
            if (!alive)
                it->capture->leak.store(true);
            it = entries.erase(it);
            if (matches)
                released++;
        } else {
            ++it;
        }
    }
    return Napi::Number::New(env, released);
}
