// kvCodecEncode(spec): Promise<{bytes, modes}>; kvCodecDecode(bytes, expect): Promise<result>; kvCodecDecodeSync: the
// same result at once (the fuzz test runs it 100k times). A bad container is a result {ok: false, reason, detail},
// never a rejection: reasons are typed on the TypeScript side (main/engine/blend/kv-codec.ts).
#include "kv_codec_addon.h"

#include <stdexcept>
#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "kv_codec.h"
#include "napi_args.h"
#include "promise_worker.h"

namespace {

using namespace weft_codec;

Napi::Uint8Array bytesArgument(const Napi::Value& value, const char* name) {
    if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
        throw Napi::TypeError::New(value.Env(), std::string(name) + " must be a Uint8Array");
    return value.As<Napi::Uint8Array>();
}

void fingerprintArgument(const Napi::Value& value, uint8_t out[16]) {
    Napi::Uint8Array bytes = bytesArgument(value, "fingerprint");
    if (bytes.ByteLength() != 16)
        throw Napi::RangeError::New(value.Env(), "fingerprint must be 16 bytes");
    std::memcpy(out, bytes.Data(), 16);
}

class EncodeWorker : public PromiseWorker {
    public:
        EncodeWorker(Napi::Env env, const Napi::Object& spec) : PromiseWorker(env, "WeftKvCodecEncode"), specRef(Napi::Persistent(spec)) {
            nTokens = (uint32_t) integerArgument(spec.Get("nTokens"), "nTokens", 1, kMaxTokens);
            options.level = (uint32_t) integerArgument(spec.Get("level"), "level", 0, kLevelCount - 1);
            options.threads = (uint32_t) integerArgument(spec.Get("threads"), "threads", 1, 256);
            options.vTrans = spec.Get("vTrans").ToBoolean();
            if (spec.Has("modeMask") && !spec.Get("modeMask").IsUndefined())
                options.modeMask = (uint32_t) integerArgument(spec.Get("modeMask"), "modeMask", 1, 7);
            fingerprintArgument(spec.Get("fingerprint"), options.fingerprint);
            if (spec.Has("rope") && spec.Get("rope").IsObject()) {
                Napi::Object rope = spec.Get("rope").As<Napi::Object>();
                options.rope.kind = (uint32_t) integerArgument(rope.Get("kind"), "rope.kind", 0, 2);
                options.rope.nRot = (uint32_t) integerArgument(rope.Get("nRot"), "rope.nRot", 0, kMaxEmbd);
                options.rope.headDim = (uint32_t) integerArgument(rope.Get("headDim"), "rope.headDim", 0, kMaxEmbd);
                options.rope.firstPos = (int32_t) integerArgument(rope.Get("firstPos"), "rope.firstPos", INT32_MIN, INT32_MAX);
                options.rope.freqBase = rope.Get("freqBase").ToNumber().FloatValue();
                options.rope.freqScale = rope.Get("freqScale").ToNumber().FloatValue();
                Napi::Value factors = rope.Get("freqFactors");
                if (factors.IsTypedArray() && factors.As<Napi::TypedArray>().TypedArrayType() == napi_float32_array) {
                    Napi::Float32Array array = factors.As<Napi::Float32Array>();
                    options.rope.factors.assign(array.Data(), array.Data() + std::min<size_t>(array.ElementLength(), options.rope.nRot / 2));
                } else if (!factors.IsNull() && !factors.IsUndefined()) {
                    throw Napi::TypeError::New(env, "rope.freqFactors must be a Float32Array or null");
                }
            }
            if (spec.Has("tuning") && spec.Get("tuning").IsObject()) {
                Napi::Object tuning = spec.Get("tuning").As<Napi::Object>();
                auto number = [&](const char* name, float& out, double min, double max) {
                    Napi::Value value = tuning.Get(name);
                    if (value.IsUndefined())
                        return;
                    const double x = value.ToNumber().DoubleValue();
                    if (!(x >= min && x <= max))
                        throw Napi::RangeError::New(env, std::string("tuning.") + name + " out of range");
                    out = (float) x;
                };
                number("spreadExponent", options.spreadExponent, 0, 1);
                number("kStepFactor", options.kStepFactor, 0.01, 100);
                number("vStepFactor", options.vStepFactor, 0.01, 100);
                number("kFineFactor", options.kFineFactor, 0.01, 100);
                number("vFineFactor", options.vFineFactor, 0.01, 100);
                float kFine = (float) options.kFineLayers, vFine = (float) options.vFineLayers;
                number("kFineLayers", kFine, 0, 32);
                number("vFineLayers", vFine, 0, 32);
                options.kFineLayers = (uint32_t) kFine;
                options.vFineLayers = (uint32_t) vFine;
                float spreadMode = (float) options.spreadMode;
                number("spreadMode", spreadMode, 0, 1);
                options.spreadMode = (uint32_t) spreadMode;
                float kLayerMask = (float) options.kLayerMask;
                number("kLayerMask", kLayerMask, 0, 16777215);
                options.kLayerMask = (uint32_t) kLayerMask;
                number("kMaskFactor", options.kMaskFactor, 0.01, 100);
                number("contentFactor", options.contentFactor, 0.01, 100);
                number("contentRatio", options.contentRatio, 0, 100);
            }
            if (spec.Has("meta") && !spec.Get("meta").IsUndefined()) {
                Napi::Uint8Array meta = bytesArgument(spec.Get("meta"), "meta");
                if (meta.ByteLength() > kMaxMetaBytes)
                    throw Napi::RangeError::New(env, "meta must be at most 1 MiB");
                options.meta = meta.Data();
                options.metaBytes = (uint32_t) meta.ByteLength();
            }
            Napi::Value layersValue = spec.Get("layers");
            if (!layersValue.IsArray())
                throw Napi::TypeError::New(env, "layers must be an array");
            Napi::Array array = layersValue.As<Napi::Array>();
            if (array.Length() == 0 || array.Length() > kMaxLayers)
                throw Napi::RangeError::New(env, "layers must hold 1 to 4096 layers");
            for (uint32_t il = 0; il < array.Length(); il++) {
                Napi::Value entry = array.Get(il);
                if (!entry.IsObject())
                    throw Napi::TypeError::New(env, "layers[" + std::to_string(il) + "] must be an object");
                Napi::Object layer = entry.As<Napi::Object>();
                const uint32_t nEmbdK = (uint32_t) integerArgument(layer.Get("nEmbdK"), "nEmbdK", 1, kMaxEmbd);
                const uint32_t nEmbdV = (uint32_t) integerArgument(layer.Get("nEmbdV"), "nEmbdV", 1, kMaxEmbd);
                Napi::Uint8Array k = bytesArgument(layer.Get("k"), "k");
                Napi::Uint8Array v = bytesArgument(layer.Get("v"), "v");
                if (k.ByteLength() != (size_t) nTokens * nEmbdK * 2 || v.ByteLength() != (size_t) nTokens * nEmbdV * 2)
                    throw Napi::RangeError::New(env, "layer " + std::to_string(il) + " K/V must hold nTokens x nEmbd f16 values");
                if ((reinterpret_cast<uintptr_t>(k.Data()) | reinterpret_cast<uintptr_t>(v.Data())) & 1)
                    throw Napi::RangeError::New(env, "layer " + std::to_string(il) + " K/V must be 2-byte aligned");
                LayerIn in;
                in.k = TensorIn{reinterpret_cast<const uint16_t*>(k.Data()), nEmbdK, nEmbdK, 1};
                in.v = options.vTrans ? TensorIn{reinterpret_cast<const uint16_t*>(v.Data()), nEmbdV, 1, nTokens}
                                      : TensorIn{reinterpret_cast<const uint16_t*>(v.Data()), nEmbdV, nEmbdV, 1};
                layers.push_back(in);
            }
        }

    protected:
        void Run() override {
            try {
                out = encode(nTokens, layers, options, &stats);
            } catch (const std::invalid_argument& error) {
                throw std::runtime_error(std::string("kvCodecEncode: ") + error.what());
            }
        }

        void OnOK() override {
            Napi::Env env = Env();
            Napi::Object result = Napi::Object::New(env);
            result.Set("bytes", Napi::Buffer<uint8_t>::Copy(env, out.data(), out.size()));
            Napi::Array modes = Napi::Array::New(env, 3);
            for (uint32_t m = 0; m < 3; m++)
                modes.Set(m, Napi::Number::New(env, stats.modes[m]));
            result.Set("modes", modes);
            deferred.Resolve(result);
        }

    private:
        Napi::ObjectReference specRef;  // keeps the input arrays alive meanwhile
        uint32_t nTokens = 0;
        EncodeOptions options;
        std::vector<LayerIn> layers;
        std::vector<uint8_t> out;
        EncodeStats stats;
};

// One decode: arguments read on the JS thread, the work anywhere, the result built on the JS thread.
struct DecodeJob {
    const uint8_t* data = nullptr;
    size_t size = 0;
    DecodeExpect expect;
    uint8_t fingerprint[16] = {};
    uint32_t threads = 1;
    Header header;
    Error error = Error::none;
    std::string detail;
    uint8_t* output = nullptr;
    size_t outputBytes = 0;

    DecodeJob(const Napi::Uint8Array& bytes, const Napi::Value& expectValue) {
        Napi::Env env = bytes.Env();
        data = bytes.Data();
        size = bytes.ByteLength();
        if (!expectValue.IsObject())
            throw Napi::TypeError::New(env, "expect must be an object");
        Napi::Object e = expectValue.As<Napi::Object>();
        if (e.Has("fingerprint") && !e.Get("fingerprint").IsUndefined()) {
            fingerprintArgument(e.Get("fingerprint"), fingerprint);
            expect.fingerprint = fingerprint;
        }
        if (e.Has("maxTokens") && !e.Get("maxTokens").IsUndefined())
            expect.maxTokens = (uint32_t) integerArgument(e.Get("maxTokens"), "maxTokens", 1, kMaxTokens);
        if (e.Has("threads") && !e.Get("threads").IsUndefined())
            threads = (uint32_t) integerArgument(e.Get("threads"), "threads", 1, 256);
        if (e.Has("layers") && !e.Get("layers").IsUndefined()) {
            if (!e.Get("layers").IsArray())
                throw Napi::TypeError::New(env, "expect.layers must be an array");
            Napi::Array layers = e.Get("layers").As<Napi::Array>();
            if (layers.Length() > kMaxLayers)
                throw Napi::RangeError::New(env, "expect.layers holds more than 4096 layers");
            for (uint32_t il = 0; il < layers.Length(); il++) {
                Napi::Object layer = layers.Get(il).As<Napi::Object>();
                expect.layers.emplace_back((uint32_t) integerArgument(layer.Get("nEmbdK"), "nEmbdK", 1, kMaxEmbd),
                    (uint32_t) integerArgument(layer.Get("nEmbdV"), "nEmbdV", 1, kMaxEmbd));
            }
        }
    }

    ~DecodeJob() { freeOutput(output); }

    // The header alone, every field checked (a disk chunk the splice decodes straight into its cells: kvCodecPeek).
    bool headerOnly = false;

    void run() {
        error = parseHeader(data, size, expect, header, detail);
        if (error != Error::none || headerOnly)
            return;
        // Only now, with the shape checked against the limits and the caller's model, is the output allocated.
        std::vector<size_t> offsets;
        for (const LayerInfo& info : header.layers) {
            offsets.push_back(outputBytes);
            outputBytes += (size_t) header.nTokens * (info.nEmbdK + info.nEmbdV) * 2;
        }
        output = static_cast<uint8_t*>(allocateOutput(outputBytes));
        if (output == nullptr)
            throw std::runtime_error("out of memory allocating " + std::to_string(outputBytes) + " bytes of decoded KV");
        std::vector<LayerOut> out;
        for (uint32_t il = 0; il < header.nLayer; il++) {
            uint16_t* k = reinterpret_cast<uint16_t*>(output + offsets[il]);
            out.push_back(LayerOut{k, k + (size_t) header.nTokens * header.layers[il].nEmbdK});
        }
        error = decodeAll(data, size, header, out, threads, detail);
    }

    Napi::Object result(Napi::Env env) {
        Napi::Object result = Napi::Object::New(env);
        result.Set("ok", Napi::Boolean::New(env, error == Error::none));
        if (error != Error::none) {
            result.Set("reason", Napi::String::New(env, errorReason(error)));
            result.Set("detail", Napi::String::New(env, detail));
            return result;
        }
        if (headerOnly) {
            Napi::Array layers = Napi::Array::New(env, header.nLayer);
            for (uint32_t il = 0; il < header.nLayer; il++) {
                Napi::Object layer = Napi::Object::New(env);
                layer.Set("nEmbdK", Napi::Number::New(env, header.layers[il].nEmbdK));
                layer.Set("nEmbdV", Napi::Number::New(env, header.layers[il].nEmbdV));
                layers.Set(il, layer);
            }
            result.Set("level", Napi::Number::New(env, header.level));
            result.Set("nTokens", Napi::Number::New(env, header.nTokens));
            result.Set("vTrans", Napi::Boolean::New(env, header.vTrans()));
            result.Set("kUnrotated", Napi::Boolean::New(env, header.rope.kind != 0));
            result.Set("meta", Napi::Buffer<uint8_t>::Copy(env, header.meta, header.metaBytes));
            result.Set("layers", layers);
            return result;
        }
        uint8_t* owned = output;
        output = nullptr;
        const size_t length = outputBytes;
        // V8 counts an ArrayBuffer's bytes as external memory itself (its ArrayBufferSweeper), external backing stores
        // included, until the buffer is collected. Reporting them again here counted every decoded body twice, which
        // doubled the external-memory pressure that makes V8 collect during a cold question's loads.
        Napi::Buffer<uint8_t> buffer = Napi::Buffer<uint8_t>::NewOrCopy(env, owned, length, [](Napi::Env, uint8_t* bytes) {
            freeOutput(bytes);
        });
        Napi::ArrayBuffer arrayBuffer = buffer.ArrayBuffer();
        const size_t base = buffer.ByteOffset();
        Napi::Array layers = Napi::Array::New(env, header.nLayer);
        size_t offset = base;
        for (uint32_t il = 0; il < header.nLayer; il++) {
            const LayerInfo& info = header.layers[il];
            const size_t kBytes = (size_t) header.nTokens * info.nEmbdK * 2, vBytes = (size_t) header.nTokens * info.nEmbdV * 2;
            Napi::Object layer = Napi::Object::New(env);
            layer.Set("nEmbdK", Napi::Number::New(env, info.nEmbdK));
            layer.Set("nEmbdV", Napi::Number::New(env, info.nEmbdV));
            layer.Set("k", Napi::Uint8Array::New(env, kBytes, arrayBuffer, offset));
            layer.Set("v", Napi::Uint8Array::New(env, vBytes, arrayBuffer, offset + kBytes));
            layers.Set(il, layer);
            offset += kBytes + vBytes;
        }
        result.Set("level", Napi::Number::New(env, header.level));
        result.Set("nTokens", Napi::Number::New(env, header.nTokens));
        result.Set("vTrans", Napi::Boolean::New(env, header.vTrans()));
        result.Set("meta", Napi::Buffer<uint8_t>::Copy(env, header.meta, header.metaBytes));
        result.Set("layers", layers);
        return result;
    }
};

class DecodeWorker : public PromiseWorker {
    public:
        DecodeWorker(Napi::Env env, const Napi::Uint8Array& bytes, const Napi::Value& expect)
            : PromiseWorker(env, "WeftKvCodecDecode"), bytesRef(Napi::Persistent(bytes)), job(bytes, expect) {}

    protected:
        void Run() override { job.run(); }
        void OnOK() override { deferred.Resolve(job.result(Env())); }

    private:
        Napi::Reference<Napi::Uint8Array> bytesRef;
        DecodeJob job;
};

} // namespace

Napi::Value KvCodecEncode(const Napi::CallbackInfo& info) {
    return promiseOf(info.Env(), [&]() -> Napi::Value {
        if (!info[0].IsObject())
            throw Napi::TypeError::New(info.Env(), "spec must be an object");
        auto* worker = new EncodeWorker(info.Env(), info[0].As<Napi::Object>());
        Napi::Promise promise = worker->Promise();
        worker->Queue();
        return promise;
    });
}

Napi::Value KvCodecDecode(const Napi::CallbackInfo& info) {
    return promiseOf(info.Env(), [&]() -> Napi::Value {
        auto* worker = new DecodeWorker(info.Env(), bytesArgument(info[0], "bytes"), info[1]);
        Napi::Promise promise = worker->Promise();
        worker->Queue();
        return promise;
    });
}

Napi::Value KvCodecDecodeSync(const Napi::CallbackInfo& info) {
    DecodeJob job(bytesArgument(info[0], "bytes"), info[1]);
    try {
        job.run();
    } catch (const std::exception& error) {
        throw Napi::Error::New(info.Env(), error.what());
    }
    return job.result(info.Env());
}

Napi::Value KvCodecPeek(const Napi::CallbackInfo& info) {
    DecodeJob job(bytesArgument(info[0], "bytes"), info[1]);
    job.headerOnly = true;
    job.run();
    return job.result(info.Env());
}

Napi::Value KvCodecLevels(const Napi::CallbackInfo& info) {
    Napi::Object result = Napi::Object::New(info.Env());
    result.Set("count", Napi::Number::New(info.Env(), kLevelCount));
    result.Set("defaultLevel", Napi::Number::New(info.Env(), kDefaultLevel));
    result.Set("formatVersion", Napi::Number::New(info.Env(), kFormatVersion));
    return result;
}
