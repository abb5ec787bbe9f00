// kvDeviation: hkvd's scores (CacheBlend's selection), per chunk token: |K_cached moved - K_captured|^2 +
// |V_cached - V_captured|^2, where the captured K/V are one early layer's under full attention over the blended prompt
// (layer_capture.cpp) and the cached ones are the chunk's computed alone, K moved to its place in the prompt like the
// splice moves it.
#include "kv_deviation.h"

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "half.h"
#include "napi_args.h"
#include "promise_worker.h"
#include "rope.h"
#include "state_blob.h"
#include "thread_pool.h"

namespace {

struct DeviationChunk {
    int64_t start = 0;        // position of the chunk's first cell once moved
    uint32_t cellCount = 0;
    int32_t delta = 0;
    const uint8_t* k = nullptr;  // cellCount rows
    const uint8_t* v = nullptr;  // rows, or transposed runs
};

struct DeviationPlan {
    const float* capturedK = nullptr;
    const float* capturedV = nullptr;
    uint64_t capturedTokens = 0;
    uint32_t nEmbdK = 0, nEmbdV = 0;
    int32_t kType = 1, vType = 1;
    bool vTrans = false;
    RopeSpec rope;
    std::vector<DeviationChunk> chunks;
    uint64_t total = 0;
    uint32_t threads = 1;
};

inline float elementAt(const uint8_t* base, size_t index, int32_t type) {
    if (type == typeF16) {
        uint16_t h;
        std::memcpy(&h, base + 2 * index, 2);
        return halfToFloat(h);
    }
    float f;
    std::memcpy(&f, base + 4 * index, 4);
    return f;
}

class DeviationWorker : public PromiseWorker {
    public:
        DeviationWorker(Napi::Env env, const Napi::Object& spec, DeviationPlan plan)
            : PromiseWorker(env, "WeftKvDeviation"), plan(std::move(plan)), specRef(Napi::Persistent(spec)) {}

    protected:
        void Run() override {
            scores.assign(plan.total, 0.0f);
            // Chunks are independent: threads take them in turn, each writing its own range of scores.
            std::vector<size_t> firstOut(plan.chunks.size());
            for (size_t i = 0, at = 0; i < plan.chunks.size(); at += plan.chunks[i].cellCount, i++)
                firstOut[i] = at;
            forEachOnThreads(plan.chunks.size(), plan.threads, [&](size_t i, std::vector<float>&) { scoreChunk(plan.chunks[i], firstOut[i]); });
        }

        void scoreChunk(const DeviationChunk& chunk, size_t out) {
            const bool f16 = plan.kType == typeF16;
            const size_t kRowSize = (size_t) plan.nEmbdK * (f16 ? 2 : 4);
            std::vector<float> row(plan.nEmbdK), scratch;
            std::vector<uint8_t> rotated(kRowSize);
            {
                std::vector<float> cache;
                if (plan.rope.kind != RopeKind::None && chunk.delta != 0)
                    cache = ropeCache(chunk.delta, plan.rope);
                for (uint32_t c = 0; c < chunk.cellCount; c++, out++) {
                    const uint64_t pos = (uint64_t) (chunk.start + c);
                    if (pos >= plan.capturedTokens)
                        throw std::runtime_error("a chunk cell lies past the captured tokens");
                    const uint8_t* k = chunk.k + (size_t) c * kRowSize;
                    if (!cache.empty()) {
                        // The spliced cache holds the rotated K rounded back to f16: score what attention will see.
                        rotateKRow(k, rotated.data(), plan.nEmbdK, f16, plan.rope, cache.data(), scratch);
                        k = rotated.data();
                    }
                    if (f16)
                        halvesToFloats(reinterpret_cast<const uint16_t*>(k), row.data(), plan.nEmbdK);
                    else
                        std::memcpy(row.data(), k, kRowSize);
                    const float* capturedK = plan.capturedK + pos * plan.nEmbdK;
                    double sum = 0;
                    for (uint32_t i = 0; i < plan.nEmbdK; i++) {
                        const float d = row[i] - capturedK[i];
                        sum += (double) d * d;
                    }
                    const float* capturedV = plan.capturedV + pos * plan.nEmbdV;
                    for (uint32_t i = 0; i < plan.nEmbdV; i++) {
                        const size_t index = plan.vTrans ? (size_t) i * chunk.cellCount + c : (size_t) c * plan.nEmbdV + i;
                        const float d = elementAt(chunk.v, index, plan.vType) - capturedV[i];
                        sum += (double) d * d;
                    }
                    scores[out] = (float) sum;
                }
            }
        }

        void OnOK() override {
            Napi::Env env = Env();
            Napi::Float32Array result = Napi::Float32Array::New(env, scores.size());
            if (!scores.empty())
                std::memcpy(result.Data(), scores.data(), scores.size() * sizeof(float));
            deferred.Resolve(result);
        }

    private:
        DeviationPlan plan;
        Napi::ObjectReference specRef;
        std::vector<float> scores;
};

} // namespace

Napi::Value KvDeviation(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return promiseOf(env, [&]() -> Napi::Value {
        if (!info[0].IsObject())
            throw Napi::TypeError::New(env, "spec must be an object");
        Napi::Object spec = info[0].As<Napi::Object>();
        DeviationPlan plan;
        plan.nEmbdK = (uint32_t) integerProperty(spec, "nEmbdK", "spec", 1, 1 << 24);
        plan.nEmbdV = (uint32_t) integerProperty(spec, "nEmbdV", "spec", 1, 1 << 24);
        plan.kType = (int32_t) integerProperty(spec, "kType", "spec", 0, 1);
        plan.threads = spec.Has("threads") && !spec.Get("threads").IsUndefined() ? (uint32_t) integerProperty(spec, "threads", "spec", 1, 256) : 1;
        plan.vType = (int32_t) integerProperty(spec, "vType", "spec", 0, 1);
        plan.vTrans = property(spec, "vTrans", "spec").ToBoolean().Value();
        plan.rope = readRopeSpec(env, spec);
        if (plan.rope.kind != RopeKind::None && plan.nEmbdK % (uint32_t) plan.rope.headDim != 0)
            throw Napi::RangeError::New(env, "spec.nEmbdK is not a whole number of heads");
        size_t kLength = 0, vLength = 0;
        plan.capturedK = floatsOf(property(spec, "capturedK", "spec"), "spec.capturedK", kLength);
        plan.capturedV = floatsOf(property(spec, "capturedV", "spec"), "spec.capturedV", vLength);
        if (kLength % plan.nEmbdK != 0 || vLength % plan.nEmbdV != 0 || kLength / plan.nEmbdK != vLength / plan.nEmbdV)
            throw Napi::RangeError::New(env, "spec.capturedK / capturedV do not hold the same whole number of tokens");
        plan.capturedTokens = kLength / plan.nEmbdK;
        const size_t kElem = plan.kType == typeF16 ? 2 : 4, vElem = plan.vType == typeF16 ? 2 : 4;
        Napi::Value chunksValue = property(spec, "chunks", "spec");
        if (!chunksValue.IsArray())
            throw Napi::TypeError::New(env, "spec.chunks must be an array");
        Napi::Array chunks = chunksValue.As<Napi::Array>();
        for (uint32_t i = 0; i < chunks.Length(); i++) {
            std::string where = "spec.chunks[" + std::to_string(i) + "]";
            Napi::Object object = chunks.Get(i).As<Napi::Object>();
            DeviationChunk chunk;
            chunk.start = integerProperty(object, "start", where, 0, 1ll << 31);
            chunk.cellCount = (uint32_t) integerProperty(object, "cellCount", where, 0, 1ll << 31);
            chunk.delta = (int32_t) integerProperty(object, "delta", where, -(1ll << 30), 1ll << 30);
            if ((uint64_t) chunk.start + chunk.cellCount > plan.capturedTokens)
                throw Napi::RangeError::New(env, where + " reaches past the " + std::to_string(plan.capturedTokens) + " captured tokens");
            chunk.k = bytesOf(property(object, "k", where), (size_t) chunk.cellCount * plan.nEmbdK * kElem, where + ".k");
            chunk.v = bytesOf(property(object, "v", where), (size_t) chunk.cellCount * plan.nEmbdV * vElem, where + ".v");
            plan.total += chunk.cellCount;
            plan.chunks.push_back(chunk);
        }
        auto* worker = new DeviationWorker(env, spec, std::move(plan));
        Napi::Promise promise = worker->Promise();
        worker->Queue();
        return promise;
    });
}
