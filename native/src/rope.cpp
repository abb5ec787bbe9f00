#include "rope.h"

#include <cmath>
#include <cstring>

#include "half.h"
#include "napi_args.h"

std::vector<float> ropeCache(int32_t delta, const RopeSpec& rope) {
    const int32_t half = rope.nRot / 2;
    std::vector<float> cache((size_t) rope.nRot);
    const float thetaScale = powf(rope.freqBase, -2.0f / (float) rope.nRot);
    float theta = (float) delta;
    for (int32_t i = 0; i < half; i++) {
        const float factor = rope.freqFactors.empty() ? 1.0f : rope.freqFactors[(size_t) i];
        const float angle = rope.freqScale * (theta / factor);
        cache[2 * (size_t) i] = cosf(angle);
        cache[2 * (size_t) i + 1] = sinf(angle);
        theta *= thetaScale;
    }
    return cache;
}

void rotateRow(float* row, int32_t heads, const RopeSpec& rope, const float* cache) {
    const int32_t half = rope.nRot / 2;
    for (int32_t h = 0; h < heads; h++) {
        float* x = row + (size_t) h * rope.headDim;
        if (rope.kind == RopeKind::Norm) {
            for (int32_t i = 0; i < half; i++) {
                const float c = cache[2 * i], s = cache[2 * i + 1];
                const float x0 = x[2 * i], x1 = x[2 * i + 1];
                x[2 * i] = x0 * c - x1 * s;
                x[2 * i + 1] = x0 * s + x1 * c;
            }
        } else {
            for (int32_t i = 0; i < half; i++) {
                const float c = cache[2 * i], s = cache[2 * i + 1];
                const float x0 = x[i], x1 = x[i + half];
                x[i] = x0 * c - x1 * s;
                x[i + half] = x0 * s + x1 * c;
            }
        }
    }
}

void rotateKRow(const uint8_t* in, uint8_t* out, size_t elems, bool f16, const RopeSpec& rope, const float* cache, std::vector<float>& row) {
    row.resize(elems);
    if (f16)
        halvesToFloats(reinterpret_cast<const uint16_t*>(in), row.data(), elems);
    else
        std::memcpy(row.data(), in, elems * 4);
    rotateRow(row.data(), (int32_t) (elems / (size_t) rope.headDim), rope, cache);
    if (f16)
        floatsToHalves(row.data(), reinterpret_cast<uint16_t*>(out), elems);
    else
        std::memcpy(out, row.data(), elems * 4);
}

RopeSpec readRopeSpec(Napi::Env env, const Napi::Object& spec) {
    Napi::Value ropeValue = property(spec, "rope", "spec");
    if (!ropeValue.IsObject())
        throw Napi::TypeError::New(env, "spec.rope must be an object");
    Napi::Object rope = ropeValue.As<Napi::Object>();
    RopeSpec out;
    out.kind = (RopeKind) integerProperty(rope, "kind", "spec.rope", 0, 2);
    out.headDim = (int32_t) integerProperty(rope, "headDim", "spec.rope", 1, 1 << 16);
    out.nRot = (int32_t) integerProperty(rope, "nRot", "spec.rope", 0, out.headDim);
    if (out.nRot % 2 != 0)
        throw Napi::RangeError::New(env, "spec.rope.nRot must be even");
    out.freqBase = (float) property(rope, "freqBase", "spec.rope").ToNumber().DoubleValue();
    out.freqScale = (float) property(rope, "freqScale", "spec.rope").ToNumber().DoubleValue();
    if (rope.Has("freqFactors") && !rope.Get("freqFactors").IsNull() && !rope.Get("freqFactors").IsUndefined()) {
        Napi::Value factors = rope.Get("freqFactors");
        if (!factors.IsTypedArray() || factors.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
            throw Napi::TypeError::New(env, "spec.rope.freqFactors must be a Float32Array or null");
        Napi::Float32Array array = factors.As<Napi::Float32Array>();
        if (array.ElementLength() < (size_t) out.nRot / 2)
            throw Napi::RangeError::New(env, "spec.rope.freqFactors holds fewer than nRot / 2 values");
        out.freqFactors.assign(array.Data(), array.Data() + array.ElementLength());
    }
    return out;
}
