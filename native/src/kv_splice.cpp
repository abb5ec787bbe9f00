// spliceSequenceState: builds a blended sequence's KV state from several parts (the prompt header and each cached
// chunk) and loads it into a sequence, in one native pass. Each part's K rows are re-positioned on the way (RoPE
// shift by the part's delta, the same rotation llama.cpp's K-shift applies after llama_memory_seq_add), V rows are
// copied. Where the cache lives in host memory (a CPU build) the rows are written straight into cells placed for the
// sequence (patch 0002); otherwise into a state blob handed to llama_state_seq_set_data. A coded part (a chunk's KV codec
// container) is decoded straight into its cells, K at their positions (kv_splice_coded.cpp).
//
// Why native: the same work in TypeScript (shift, concat, serialize) ran at 0.10-0.15 GB/s and ate the blend's gain
// on a GPU. Here every byte is written once into one buffer, by several threads, with F16C conversion where the CPU
// has it; on a GPU build that buffer is pinned host memory (the GPU backend's host buffer type), so the
// host-to-device copies inside llama_state_seq_set_data run at DMA speed.
//
// The blob layout is llama.cpp's in-memory sequence state (see main/engine/kv/kv-blob.ts):
//   u32 magic, i32 seq_id, u32 n_stream, per stream u32 cell_count (0 except `stream`), cells (i32 pos, u32 1,
//   i32 seq_id), u32 v_trans, u32 n_layer, per layer K (i32 type, u64 row_size, rows), per layer V (rows like K, or
//   transposed: i32 type, u32 elem_size, u32 n_embd, then per dimension every cell's element).
#include "kv_splice.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "addon_handles.h"
#include "half.h"
#include "kv_cells.h"
#include "kv_resident.h"
#include "kv_splice_coded.h"
#include "kv_splice_plan.h"
#include "llama_functions.h"
#include "napi_args.h"
#include "pinned_buffer.h"
#include "promise_worker.h"
#include "rope.h"
#include "state_blob.h"
#include "thread_pool.h"

namespace {

using splice::LayerOverride;
using splice::LayerShape;
using splice::Part;
using splice::Plan;
using splice::readPlan;

// The splice's pinned host buffer (see PinnedBuffer), shared by every call and released by releasePinnedScratch().
struct PinnedScratch {
    std::mutex mutex;
    PinnedBuffer buffer;
};

PinnedScratch& pinnedScratch() {
    static PinnedScratch scratch;
    return scratch;
}

double millisecondsSince(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// Writes one part's rows of an overridden layer: the exact row for each cell whose position the override covers,
// the cached row (K rotated by the part's delta) otherwise.
void writeOverridden(const LayerOverride& exact, const Part& part, size_t il, const LayerShape& layer, bool isK, bool vTrans,
        uint64_t vStride, uint64_t firstCell, uint8_t* base, const std::vector<float>& cache, const RopeSpec& rope,
        std::vector<float>& row) {
    const bool f16 = (isK ? layer.kType : layer.vType) == typeF16;
    const size_t elemSize = f16 ? 2 : 4;
    const uint32_t nEmbd = isK ? exact.nEmbdK : exact.nEmbdV;
    const float* rows = isK ? exact.k : exact.v;
    const uint8_t* source = isK ? part.k[il] : part.v[il];
    for (uint32_t c = 0; c < part.cellCount; c++) {
        const int64_t pos = part.positions[c];
        const bool covered = pos >= 0 && (uint64_t) pos < exact.nTokens;
        const uint64_t cell = firstCell + c;
        if (!isK && vTrans) {
            for (uint32_t d = 0; d < nEmbd; d++) {
                uint8_t* dst = base + d * vStride + cell * elemSize;
                if (!covered) {
                    std::memcpy(dst, source + ((size_t) d * part.cellCount + c) * elemSize, elemSize);
                } else if (f16) {
                    const uint16_t h = floatToHalf(rows[(size_t) pos * nEmbd + d]);
                    std::memcpy(dst, &h, 2);
                } else {
                    std::memcpy(dst, &rows[(size_t) pos * nEmbd + d], 4);
                }
            }
            continue;
        }
        const uint64_t rowSize = isK ? layer.kRowSize : layer.vRowSize;
        uint8_t* dst = base + cell * rowSize;
        if (covered) {
            if (f16)
                floatsToHalves(rows + (size_t) pos * nEmbd, reinterpret_cast<uint16_t*>(dst), nEmbd);
            else
                std::memcpy(dst, rows + (size_t) pos * nEmbd, (size_t) nEmbd * 4);
            continue;
        }
        const uint8_t* src = source + c * rowSize;
        if (!isK || cache.empty()) {
            std::memcpy(dst, src, rowSize);
            continue;
        }
        rotateKRow(src, dst, rowSize / elemSize, f16, rope, cache.data(), row);
    }
}

class SpliceWorker : public PromiseWorker {
    public:
        SpliceWorker(Napi::Env env, const Napi::Object& handle, const Napi::Object& spec, const LlamaFunctions& functions,
                llama_context* ctx, Plan plan)
            : PromiseWorker(env, "WeftSpliceSequenceState"), functions(functions), ctx(ctx), plan(std::move(plan)),
              handleRef(Napi::Persistent(handle)), specRef(Napi::Persistent(spec)) {}

        ~SpliceWorker() override {
            std::free(owned);
        }

    protected:
        void Run() override {
            if (plan.anyCoded)
                coded = splice::prepareCodedParts(plan);  // every container checked before any cell is taken
            if (plan.totalCells > 0)
                spliceHostParts();
            else
                functions.llama_memory_seq_rm(functions.llama_get_memory(ctx), plan.seqId, -1, -1);
            if (!plan.resident.empty()) {
                auto started = std::chrono::steady_clock::now();
                try {
                    resident = placeResidentParts(functions, ctx, plan.seqId, plan.resident);
                } catch (...) {
                    functions.llama_memory_seq_rm(functions.llama_get_memory(ctx), plan.seqId, -1, -1);
                    throw;
                }
                residentMs = millisecondsSince(started);
            }
        }

        void spliceHostParts() {
            if (!spliceInPlace())
                spliceThroughBlob();
        }

        // Where a layer's rows go: K (and V, when not transposed) rows of cell c at k + c * rowSize; transposed V's
        // element d of cell c at v + d * vStride + c * elemSize.
        struct LayerTarget {
            uint8_t* k = nullptr;
            uint8_t* v = nullptr;
            uint64_t vStride = 0;
        };

        // Writes every host part's rows to `targets`, part p's first cell at cell0 + the cells of the parts before it:
        // K rotated by the part's delta, V copied, overridden layers' exact rows where they cover a cell.
        void writeParts(const std::vector<LayerTarget>& targets, uint64_t cell0) {
            // One rotation table per part.
            std::vector<std::vector<float>> caches(plan.parts.size());
            for (size_t p = 0; p < plan.parts.size(); p++)
                if (plan.rope.kind != RopeKind::None && plan.parts[p].delta != 0)
                    caches[p] = ropeCache(plan.parts[p].delta, plan.rope);

            std::vector<uint64_t> firstCell(plan.parts.size());
            for (size_t p = 0, cell = cell0; p < plan.parts.size(); cell += plan.parts[p].cellCount, p++)
                firstCell[p] = cell;

            // Work items: (layer, part) for K and for V; threads take them in turn.
            const size_t items = plan.layers.size() * plan.parts.size() * 2;
            forEachOnThreads(items, plan.threads, [&](size_t item, std::vector<float>& row) {
                const bool isK = item % 2 == 0;
                const size_t rest = item / 2;
                const size_t il = rest / plan.parts.size();
                const size_t p = rest % plan.parts.size();
                const Part& part = plan.parts[p];
                const LayerShape& layer = plan.layers[il];
                const LayerTarget& target = targets[il];
                if (part.cellCount == 0)
                    return;
                if (part.coded != nullptr) {
                    if (!isK)
                        return;  // the K item decodes the layer's K and V together
                    const auto started = std::chrono::steady_clock::now();
                    splice::decodeCodedLayer(part, p, coded[p], il, target.k + firstCell[p] * layer.kRowSize, target.v + firstCell[p] * layer.vRowSize);
                    codedMicros += (int64_t) (millisecondsSince(started) * 1000);
                    return;
                }
                const LayerOverride* exact = plan.overrideOf.empty() ? nullptr : plan.overrideOf[il];
                if (exact != nullptr) {
                    writeOverridden(*exact, part, il, layer, isK, plan.vTrans, target.vStride, firstCell[p],
                        isK ? target.k : target.v, caches[p], plan.rope, row);
                    return;
                }
                if (isK) {
                    uint8_t* dst = target.k + firstCell[p] * layer.kRowSize;
                    const uint8_t* src = part.k[il];
                    if (caches[p].empty()) {
                        std::memcpy(dst, src, part.cellCount * layer.kRowSize);
                        return;
                    }
                    const size_t elems = layer.kRowSize / (layer.kType == typeF16 ? 2 : 4);
                    for (uint32_t c = 0; c < part.cellCount; c++)
                        rotateKRow(src + c * layer.kRowSize, dst + c * layer.kRowSize, elems, layer.kType == typeF16, plan.rope,
                            caches[p].data(), row);
                } else if (!plan.vTrans) {
                    std::memcpy(target.v + firstCell[p] * layer.vRowSize, part.v[il], part.cellCount * layer.vRowSize);
                } else {
                    const size_t run = (size_t) part.cellCount * layer.vElemSize;
                    uint8_t* dst = target.v + firstCell[p] * layer.vElemSize;
                    for (uint32_t d = 0; d < layer.nEmbdV; d++)
                        std::memcpy(dst + d * target.vStride, part.v[il] + d * run, run);
                }
            });
        }

        // Where the context's cache lives in host memory (a CPU build), the parts' rows go straight into its cells
        // (patch 0002's placement): no state blob to allocate and fault in, and no second copy by
        // llama_state_seq_set_data. A 32-layer 4k-token splice spent most of its time faulting in a fresh blob.
        // Returns false where it cannot (a GPU cache, transposed V, several streams, no patch, memory that cannot place
        // cells, no contiguous run of free cells); by then it may have cleared the sequence, as the blob's loader does.
        bool spliceInPlace() {
            if (plan.vTrans || plan.nStream != 1 || !kv_cells::placementSupported())
                return false;
            std::vector<kv_cells::CacheLayer> cache;
            try {
                cache = kv_cells::cacheLayers(functions, ctx, plan.seqId);
            } catch (const std::exception&) {
                return false;  // not a plain KV cache: the blob path says what is wrong, if anything
            }
            if (cache.size() != plan.layers.size())
                return false;
            std::vector<LayerTarget> targets;
            uint64_t bytes = 0;
            for (size_t il = 0; il < cache.size(); il++) {
                const kv_cells::CacheLayer& layer = cache[il];
                const LayerShape& shape = plan.layers[il];
                if (layer.vTrans || (int32_t) layer.k->type != shape.kType || (int32_t) layer.v->type != shape.vType ||
                        (uint64_t) layer.k->nb[1] != shape.kRowSize || (uint64_t) layer.v->nb[1] != shape.vRowSize ||
                        !functions.ggml_backend_buffer_is_host(layer.k->buffer) || !functions.ggml_backend_buffer_is_host(layer.v->buffer))
                    return false;
                targets.push_back({static_cast<uint8_t*>(layer.k->data) + layer.kOffset, static_cast<uint8_t*>(layer.v->data) + layer.vOffset, 0});
                bytes += plan.totalCells * (shape.kRowSize + shape.vRowSize);
            }

            auto started = std::chrono::steady_clock::now();
            std::vector<llama_pos> positions, shifts(plan.totalCells, 0);
            positions.reserve(plan.totalCells);
            for (const Part& part : plan.parts)
                positions.insert(positions.end(), part.positions, part.positions + part.cellCount);
            // As llama_state_seq_set_data does, the sequence's old cells go first.
            functions.llama_memory_seq_rm(functions.llama_get_memory(ctx), plan.seqId, -1, -1);
            int64_t first = -1;
            try {
                first = kv_cells::placeCells(functions, ctx, plan.seqId, positions, shifts);
            } catch (const std::exception&) {
                return false;  // memory that cannot place cells (M-RoPE positions, say): the blob's loader may
            }
            if (first < 0)
                return false;  // no contiguous run of free cells: the blob's loader finds its own
            setMs = millisecondsSince(started);

            started = std::chrono::steady_clock::now();
            try {
                writeParts(targets, (uint64_t) first);
            } catch (const std::exception& error) {
                functions.llama_memory_seq_rm(functions.llama_get_memory(ctx), plan.seqId, -1, -1);
                throw std::runtime_error(std::string("writing the blended KV into the cache failed: ") + error.what());
            }
            buildMs = millisecondsSince(started);
            inPlace = true;
            blobBytes = bytes;
            bytesRead = bytes;
            return true;
        }

        void spliceThroughBlob() {
            auto started = std::chrono::steady_clock::now();
            const uint64_t n = plan.totalCells;
            size_t size = 8 + 4 + 4 * (size_t) plan.nStream;
            size_t cellsAt = size;
            size += n * 12;
            size_t layersAt = size;
            size += 8;
            for (const LayerShape& layer : plan.layers) {
                size += 12 + n * layer.kRowSize;
                size += 12 + (plan.vTrans ? n * (uint64_t) layer.vElemSize * layer.nEmbdV : n * layer.vRowSize);
            }
            blobBytes = size;

            uint8_t* blob = nullptr;
            std::unique_lock<std::mutex> pinnedLock;
            if (plan.pinned) {
                PinnedScratch& scratch = pinnedScratch();
                pinnedLock = std::unique_lock<std::mutex>(scratch.mutex);
                // Grown by half again, so slightly longer prompts do not re-pin every time.
                blob = scratch.buffer.reserve(functions, size, size / 2);
                usedPinned = blob != nullptr;
                if (blob == nullptr)
                    pinnedLock.unlock();
            }
            if (blob == nullptr) {
                owned = static_cast<uint8_t*>(std::malloc(size));
                if (owned == nullptr)
                    throw std::runtime_error("out of memory allocating a " + std::to_string(size) + "-byte blended KV state");
                blob = owned;
            }

            // Header and cells.
            auto put32 = [&](size_t at, uint32_t value) { std::memcpy(blob + at, &value, 4); };
            auto put64 = [&](size_t at, uint64_t value) { std::memcpy(blob + at, &value, 8); };
            put32(0, stateBlobMagic);
            put32(4, (uint32_t) plan.seqId);
            put32(8, plan.nStream);
            for (uint32_t s = 0; s < plan.nStream; s++)
                put32(12 + 4 * (size_t) s, s == plan.stream ? (uint32_t) n : 0u);
            {
                size_t at = cellsAt;
                for (const Part& part : plan.parts)
                    for (uint32_t c = 0; c < part.cellCount; c++) {
                        put32(at, (uint32_t) part.positions[c]);
                        put32(at + 4, 1u);
                        put32(at + 8, (uint32_t) plan.seqId);
                        at += 12;
                    }
            }
            put32(layersAt, plan.vTrans ? 1u : 0u);
            put32(layersAt + 4, (uint32_t) plan.layers.size());

            // Where each layer's K and V data start.
            std::vector<LayerTarget> targets(plan.layers.size());
            size_t at = layersAt + 8;
            for (size_t il = 0; il < plan.layers.size(); il++) {
                const LayerShape& layer = plan.layers[il];
                put32(at, (uint32_t) layer.kType);
                put64(at + 4, layer.kRowSize);
                targets[il].k = blob + at + 12;
                at += 12 + n * layer.kRowSize;
            }
            for (size_t il = 0; il < plan.layers.size(); il++) {
                const LayerShape& layer = plan.layers[il];
                put32(at, (uint32_t) layer.vType);
                if (plan.vTrans) {
                    put32(at + 4, layer.vElemSize);
                    put32(at + 8, layer.nEmbdV);
                    targets[il].v = blob + at + 12;
                    targets[il].vStride = n * layer.vElemSize;
                    at += 12 + n * (uint64_t) layer.vElemSize * layer.nEmbdV;
                } else {
                    put64(at + 4, layer.vRowSize);
                    targets[il].v = blob + at + 12;
                    at += 12 + n * layer.vRowSize;
                }
            }
            if (at != size)
                throw std::runtime_error("internal error: the blended KV layout does not add up");

            try {
                writeParts(targets, 0);
            } catch (const std::exception& error) {
                throw std::runtime_error(std::string("building the blended KV state failed: ") + error.what());
            }
            buildMs = millisecondsSince(started);

            auto setStarted = std::chrono::steady_clock::now();
            bytesRead = functions.llama_state_seq_set_data(ctx, blob, size, plan.seqId);
            setMs = millisecondsSince(setStarted);
            if (bytesRead == 0)
                throw std::runtime_error(
                    "llama_state_seq_set_data rejected the blended " + std::to_string(size) + "-byte state for sequence " +
                    std::to_string(plan.seqId) + ": the parts do not match this context (model, flash-attention setting, " +
                    "KV type or stream layout) or do not fit its free cells; llama.cpp cleared the sequence");
        }

        void OnOK() override {
            Napi::Env env = Env();
            Napi::Object result = Napi::Object::New(env);
            result.Set("bytesRead", Napi::Number::New(env, (double) bytesRead));
            result.Set("blobBytes", Napi::Number::New(env, (double) blobBytes));
            result.Set("buildMs", Napi::Number::New(env, buildMs));
            result.Set("setMs", Napi::Number::New(env, setMs));
            result.Set("pinned", Napi::Boolean::New(env, usedPinned));
            result.Set("inPlace", Napi::Boolean::New(env, inPlace));
            result.Set("residentBytes", Napi::Number::New(env, (double) resident.bytes));
            result.Set("residentMs", Napi::Number::New(env, residentMs));
            result.Set("residentCopies", Napi::Number::New(env, (double) resident.copies));
            result.Set("residentPlaceMs", Napi::Number::New(env, resident.placeMs));
            result.Set("residentQueueMs", Napi::Number::New(env, resident.queueMs));
            result.Set("residentSyncMs", Napi::Number::New(env, resident.syncMs));
            uint64_t codedBytes = 0;
            for (const Part& part : plan.parts)
                if (part.coded != nullptr)
                    for (const LayerShape& layer : plan.layers)
                        codedBytes += part.cellCount * (layer.kRowSize + layer.vRowSize);
            result.Set("codedBytes", Napi::Number::New(env, (double) codedBytes));
            result.Set("codedMs", Napi::Number::New(env, codedMicros.load() / 1000.0));
            deferred.Resolve(result);
        }

    private:
        const LlamaFunctions& functions;
        llama_context* ctx;
        Plan plan;
        Napi::ObjectReference handleRef;
        Napi::ObjectReference specRef;  // keeps every typed array of the plan alive while the worker reads it
        uint8_t* owned = nullptr;
        size_t blobBytes = 0;
        size_t bytesRead = 0;
        double buildMs = 0;
        double setMs = 0;
        bool usedPinned = false;
        bool inPlace = false;
        ResidentPlacementResult resident;
        double residentMs = 0;
        std::vector<weft_codec::Header> coded;   // per part: a coded part's checked header (prepareCodedParts)
        std::atomic<int64_t> codedMicros{0};     // decoding coded parts, summed over threads
};

} // namespace

Napi::Value SpliceSequenceState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return promiseOf(env, [&]() -> Napi::Value {
        const LlamaFunctions& functions = requireLlamaFunctions();
        llama_context* ctx = contextOfHandle(info[0], "context handle");
        if (!info[2].IsObject())
            throw Napi::TypeError::New(env, "spec must be an object");
        Napi::Object spec = info[2].As<Napi::Object>();
        Plan plan = readPlan(env, functions, ctx, info[1], spec);
        auto* worker = new SpliceWorker(env, info[0].As<Napi::Object>(), spec, functions, ctx, std::move(plan));
        Napi::Promise promise = worker->Promise();
        worker->Queue();
        return promise;
    });
}

Napi::Value ReleasePinnedScratch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    PinnedScratch& scratch = pinnedScratch();
    std::lock_guard<std::mutex> lock(scratch.mutex);
    const size_t freed = scratch.buffer.release(getLlamaFunctions());
    return Napi::Number::New(env, (double) freed);
}
