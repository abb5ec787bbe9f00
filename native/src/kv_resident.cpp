#include "kv_resident.h"

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>

#include "addon_handles.h"
#include "kv_cells.h"
#include "kv_copy_graph.h"
#include "napi_args.h"
#include "promise_worker.h"

namespace {

const napi_type_tag residentTag = {0x5765667452657369ULL, 0x64656e744b563031ULL};

using kv_cells::CacheLayer;

// The cache tensors the resident rows are copied into; throws when the build, the cache or its V layout cannot take them.
std::vector<CacheLayer> cacheLayers(const LlamaFunctions& functions, llama_context* ctx, llama_seq_id seqId) {
    std::vector<CacheLayer> layers = kv_cells::cacheLayers(functions, ctx, seqId);
    for (const CacheLayer& layer : layers)
        if (layer.vTrans)
            throw std::runtime_error("the context's V cache is transposed (flash attention off): resident KVs need flash attention");
    return layers;
}

} // namespace

// The rows and the device buffers that hold them; freed when the last holder lets go. The JS handle is one holder,
// and every splice that places them holds them too until its copies are done, so an eviction while a splice is in
// flight (background admission runs beside questions) cannot free memory a copy still reads.
struct ResidentRows {
    const LlamaFunctions* functions = nullptr;
    llama_context* ctx = nullptr;  // the context whose cache layout the rows match
    uint32_t cellCount = 0;
    uint64_t bytes = 0;
    std::vector<ggml_backend_buffer_t> buffers;
    struct Layer {
        ggml_backend_buffer_t kBuffer = nullptr;
        uint8_t* k = nullptr;
        uint64_t kRowSize = 0;
        ggml_backend_buffer_t vBuffer = nullptr;
        uint8_t* v = nullptr;
        uint64_t vRowSize = 0;
    };
    std::vector<Layer> layers;

    ~ResidentRows() {
        for (ggml_backend_buffer_t buffer : buffers)
            functions->ggml_backend_buffer_free(buffer);
    }
};

// What a JS handle wraps: released handles hold nothing.
struct ResidentKv {
    std::shared_ptr<const ResidentRows> rows;
};

bool residentKvSupported() {
    return kv_cells::placementSupported();
}

std::shared_ptr<const ResidentRows> residentOfHandle(const Napi::Value& value, const std::string& where, llama_context* ctx) {
    if (!value.IsExternal() || !value.As<Napi::External<ResidentKv>>().CheckTypeTag(&residentTag))
        throw Napi::TypeError::New(value.Env(), where + " is not a resident KV handle");
    std::shared_ptr<const ResidentRows> rows = value.As<Napi::External<ResidentKv>>().Data()->rows;
    if (rows == nullptr)
        throw Napi::Error::New(value.Env(), where + ": the resident KV was released");
    if (rows->ctx != ctx)
        throw Napi::Error::New(value.Env(), where + ": the resident KV was made for another context");
    return rows;
}

uint32_t residentCellCount(const ResidentRows& rows) {
    return rows.cellCount;
}

ResidentPlacementResult placeResidentParts(const LlamaFunctions& functions, llama_context* ctx, llama_seq_id seqId,
        const std::vector<ResidentPlacement>& parts) {
    ResidentPlacementResult result;
    auto started = std::chrono::steady_clock::now();
    auto lap = [&]() {
        auto now = std::chrono::steady_clock::now();
        double ms = std::chrono::duration<double, std::milli>(now - started).count();
        started = now;
        return ms;
    };
    std::vector<CacheLayer> layers = cacheLayers(functions, ctx, seqId);
    std::vector<llama_pos> positions, shifts;
    for (const ResidentPlacement& part : parts) {
        if (part.kv == nullptr) { // a placeholder: cells at their final positions, no rows
            positions.insert(positions.end(), part.positions, part.positions + part.cellCount);
            shifts.insert(shifts.end(), part.cellCount, 0);
            continue;
        }
        if (part.kv->layers.size() != layers.size())
            throw std::runtime_error("a resident KV has " + std::to_string(part.kv->layers.size()) + " layers, the context " +
                std::to_string(layers.size()));
        for (uint32_t c = 0; c < part.cellCount; c++) {
            positions.push_back(part.positions[c]);
            shifts.push_back(part.delta);
        }
    }
    if (positions.empty())
        return result;
    // Checked before any cell is taken or any copy queued, so a mismatch leaves nothing half done.
    for (const ResidentPlacement& part : parts)
        for (size_t il = 0; part.kv != nullptr && il < layers.size(); il++)
            if ((uint64_t) layers[il].k->nb[1] != part.kv->layers[il].kRowSize || (uint64_t) layers[il].v->nb[1] != part.kv->layers[il].vRowSize)
                throw std::runtime_error("layer " + std::to_string(il) + ": resident rows do not match the cache's row size");

    const int64_t first = kv_cells::placeCells(functions, ctx, seqId, positions, shifts);
    if (first < 0)
        throw std::runtime_error("no run of " + std::to_string(positions.size()) + " free KV cells for the resident chunks (context too small)");

    result.placeMs = lap();
    // One byte range per part, layer and K|V, in that order: mergeCopies makes each part's ranges one strided copy
    // where the resident rows and the cache tensors each step by one pitch (layers of the same row sizes).
    std::vector<ByteCopy> copies;
    uint64_t cell = (uint64_t) first;
    for (const ResidentPlacement& part : parts) {
        for (size_t il = 0; part.kv != nullptr && il < layers.size(); il++) {
            const CacheLayer& target = layers[il];
            const ResidentRows::Layer& source = part.kv->layers[il];
            copies.push_back({source.kBuffer, source.k, target.k->buffer,
                static_cast<uint8_t*>(target.k->data) + target.kOffset + cell * source.kRowSize, (size_t) part.cellCount * source.kRowSize});
            copies.push_back({source.vBuffer, source.v, target.v->buffer,
                static_cast<uint8_t*>(target.v->data) + target.vOffset + cell * source.vRowSize, (size_t) part.cellCount * source.vRowSize});
            result.bytes += copies[copies.size() - 2].bytes + copies.back().bytes;
        }
        cell += part.cellCount;
    }
    // cudaMemcpy2DAsync takes pitches below 2^31 (cudaDevAttrMaxPitch); a larger step is copied row by row.
    QueuedCopies queued = queueCopies(functions, mergeCopies(copies, (size_t) INT32_MAX));
    result.copies = queued.count;
    result.queueMs = lap();
    queued.wait();
    result.syncMs = lap();
    return result;
}

namespace {

struct UploadLayer {
    int32_t kType = 0;
    int32_t vType = 0;
    uint64_t kRowSize = 0;
    uint64_t vRowSize = 0;
    const uint8_t* k = nullptr;
    const uint8_t* v = nullptr;
};

class UploadWorker : public PromiseWorker {
    public:
        UploadWorker(Napi::Env env, const Napi::Object& context, const Napi::Object& spec, const LlamaFunctions& functions,
                llama_context* ctx, llama_seq_id seqId, uint32_t cellCount, std::vector<UploadLayer> layers)
            : PromiseWorker(env, "WeftResidentKvUpload"), functions(functions), ctx(ctx), seqId(seqId), cellCount(cellCount),
              layers(std::move(layers)), contextRef(Napi::Persistent(context)), specRef(Napi::Persistent(spec)) {}

    protected:
        void Run() override {
            std::vector<CacheLayer> cache = cacheLayers(functions, ctx, seqId);
            if (cache.size() != layers.size())
                throw std::runtime_error("the KV has " + std::to_string(layers.size()) + " layers, the context " + std::to_string(cache.size()));
            // One buffer per buffer type the cache uses (one, unless layers sit on different devices).
            std::map<ggml_backend_buffer_type_t, size_t> sizes;
            for (size_t il = 0; il < layers.size(); il++) {
                const UploadLayer& layer = layers[il];
                const CacheLayer& target = cache[il];
                if ((int32_t) target.k->type != layer.kType || (int32_t) target.v->type != layer.vType ||
                        (uint64_t) target.k->nb[1] != layer.kRowSize || (uint64_t) target.v->nb[1] != layer.vRowSize)
                    throw std::runtime_error("layer " + std::to_string(il) + ": the KV's types or row sizes differ from the context's cache " +
                        "(another model or KV type?)");
                sizes[functions.ggml_backend_buffer_get_type(target.k->buffer)] += alignUp(cellCount * layer.kRowSize);
                sizes[functions.ggml_backend_buffer_get_type(target.v->buffer)] += alignUp(cellCount * layer.vRowSize);
            }
            auto kv = std::make_shared<ResidentRows>();
            kv->functions = &functions;
            kv->ctx = ctx;
            kv->cellCount = cellCount;
            std::map<ggml_backend_buffer_type_t, std::pair<ggml_backend_buffer_t, size_t>> cursor;
            for (const auto& [type, size] : sizes) {
                ggml_backend_buffer_t buffer = functions.ggml_backend_buft_alloc_buffer(type, size);
                if (buffer == nullptr)
                    throw std::runtime_error("out of device memory for a " + std::to_string(size) + "-byte resident KV");
                kv->buffers.push_back(buffer);
                cursor[type] = {buffer, 0};
            }
            for (size_t il = 0; il < layers.size(); il++) {
                const UploadLayer& layer = layers[il];
                ResidentRows::Layer resident;
                resident.kRowSize = layer.kRowSize;
                resident.vRowSize = layer.vRowSize;
                place(cursor[functions.ggml_backend_buffer_get_type(cache[il].k->buffer)], layer.k, cellCount * layer.kRowSize, resident.kBuffer, resident.k);
                place(cursor[functions.ggml_backend_buffer_get_type(cache[il].v->buffer)], layer.v, cellCount * layer.vRowSize, resident.vBuffer, resident.v);
                kv->bytes += cellCount * (layer.kRowSize + layer.vRowSize);
                kv->layers.push_back(resident);
            }
            result = std::move(kv);
        }

        void OnOK() override {
            Napi::Env env = Env();
            Napi::External<ResidentKv> handle = Napi::External<ResidentKv>::New(env, new ResidentKv{std::move(result)},
                [](Napi::Env, ResidentKv* data) { delete data; });
            handle.TypeTag(&residentTag);
            deferred.Resolve(handle);
        }

    private:
        const LlamaFunctions& functions;
        llama_context* ctx;
        llama_seq_id seqId;
        uint32_t cellCount;
        std::vector<UploadLayer> layers;
        Napi::ObjectReference contextRef;
        Napi::ObjectReference specRef;  // keeps the typed arrays alive while the worker reads them
        std::shared_ptr<const ResidentRows> result;

        static size_t alignUp(size_t bytes) {
            return (bytes + 255) & ~(size_t) 255;
        }

        void place(std::pair<ggml_backend_buffer_t, size_t>& at, const uint8_t* source, size_t bytes, ggml_backend_buffer_t& buffer, uint8_t*& data) {
            buffer = at.first;
            data = static_cast<uint8_t*>(functions.ggml_backend_buffer_get_base(at.first)) + at.second;
            ggml_tensor view = byteView(buffer, data, bytes);
            functions.ggml_backend_tensor_set(&view, source, 0, bytes);
            at.second += alignUp(bytes);
        }
};

} // namespace

Napi::Value ResidentKvUpload(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return promiseOf(env, [&]() -> Napi::Value {
        llama_context* ctx = contextOfHandle(info[0], "context");
        const LlamaFunctions& functions = requireLlamaFunctions();
        if (!residentKvSupported())
            throw Napi::Error::New(env, "this llama.cpp build lacks Weft's patch 0002 (llama_memory_seq_place_cells)");
        const llama_seq_id seqId = (llama_seq_id) integerArgument(info[1], "seqId", 0, (int64_t) functions.llama_n_seq_max(ctx) - 1);
        if (!info[2].IsObject())
            throw Napi::TypeError::New(env, "spec must be an object {cellCount, layers}");
        Napi::Object spec = info[2].As<Napi::Object>();
        const uint32_t cellCount = (uint32_t) integerProperty(spec, "cellCount", "spec", 1, 1 << 24);
        if (!spec.Get("layers").IsArray())
            throw Napi::TypeError::New(env, "spec.layers must be an array");
        Napi::Array layersArray = spec.Get("layers").As<Napi::Array>();
        std::vector<UploadLayer> layers;
        for (uint32_t il = 0; il < layersArray.Length(); il++) {
            std::string where = "spec.layers[" + std::to_string(il) + "]";
            Napi::Object object = layersArray.Get(il).As<Napi::Object>();
            UploadLayer layer;
            layer.kType = (int32_t) integerProperty(object, "kType", where, 0, 1);
            layer.vType = (int32_t) integerProperty(object, "vType", where, 0, 1);
            layer.kRowSize = (uint64_t) integerProperty(object, "kRowSize", where, 1, 1ll << 32);
            layer.vRowSize = (uint64_t) integerProperty(object, "vRowSize", where, 1, 1ll << 32);
            layer.k = bytesOf(object.Get("k"), (size_t) cellCount * layer.kRowSize, where + ".k");
            layer.v = bytesOf(object.Get("v"), (size_t) cellCount * layer.vRowSize, where + ".v");
            layers.push_back(layer);
        }
        auto* worker = new UploadWorker(env, info[0].As<Napi::Object>(), spec, functions, ctx, seqId, cellCount, std::move(layers));
        Napi::Promise promise = worker->Promise();
        worker->Queue();
        return promise;
    });
}

Napi::Value ResidentKvRelease(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsExternal() || !info[0].As<Napi::External<ResidentKv>>().CheckTypeTag(&residentTag))
        throw Napi::TypeError::New(env, "handle is not a resident KV handle");
    ResidentKv* kv = info[0].As<Napi::External<ResidentKv>>().Data();
    const uint64_t freed = kv->rows == nullptr ? 0 : kv->rows->bytes;
    kv->rows.reset();
    return Napi::Number::New(env, (double) freed);
}

Napi::Value ResidentKvSupported(const Napi::CallbackInfo& info) {
    const LlamaFunctions& functions = getLlamaFunctions();
    return Napi::Boolean::New(info.Env(), functions.missing.empty() && residentKvSupported());
}
