// getSequenceState / setSequenceState: a sequence's KV state as an in-memory blob
// (llama_state_seq_get_data / llama_state_seq_set_data), on the llama_context node-llama-cpp already holds.
#include "sequence_state.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "addon_handles.h"
#include "llama_functions.h"
#include "napi_args.h"
#include "promise_worker.h"
#include "state_blob.h"

namespace {

llama_seq_id sequenceArgument(const LlamaFunctions& functions, llama_context* ctx, const Napi::Value& value) {
    int64_t maxSequence = (int64_t) functions.llama_n_seq_max(ctx) - 1;
    return (llama_seq_id) integerArgument(value, "seqId", 0, maxSequence);
}

class GetSequenceStateWorker : public PromiseWorker {
    public:
        GetSequenceStateWorker(Napi::Env env, const Napi::Object& handle, const LlamaFunctions& functions,
                llama_context* ctx, llama_seq_id seqId)
            : PromiseWorker(env, "WeftGetSequenceState"), functions(functions), ctx(ctx), seqId(seqId),
              handleRef(Napi::Persistent(handle)) {}

        ~GetSequenceStateWorker() override {
            std::free(data);
        }

    protected:
        void Run() override {
            size = functions.llama_state_seq_get_size(ctx, seqId);
            if (size == 0)
                throw std::runtime_error("llama_state_seq_get_size returned 0");
            data = static_cast<uint8_t*>(std::malloc(size));
            if (data == nullptr)
                throw std::runtime_error("out of memory allocating a " + std::to_string(size) + "-byte sequence state");
            size_t written = functions.llama_state_seq_get_data(ctx, data, size, seqId);
            if (written == 0)
                throw std::runtime_error("llama_state_seq_get_data failed (see llama.cpp's log)");
            if (written > size)
                throw std::runtime_error("llama_state_seq_get_data wrote more than llama_state_seq_get_size announced");
            size = written;
        }

        void OnOK() override {
            Napi::Env env = Env();
            uint8_t* owned = data;
            data = nullptr;
            size_t length = size;
            // Zero-copy where external buffers are allowed (Node); Electron's memory cage makes this a copy.
            Napi::MemoryManagement::AdjustExternalMemory(env, (int64_t) length);
            Napi::Buffer<uint8_t> buffer = Napi::Buffer<uint8_t>::NewOrCopy(env, owned, length,
                [length](Napi::Env finalizeEnv, uint8_t* bytes) {
                    std::free(bytes);
                    Napi::MemoryManagement::AdjustExternalMemory(finalizeEnv, -(int64_t) length);
                });
            deferred.Resolve(buffer);
        }

    private:
        const LlamaFunctions& functions;
        llama_context* ctx;
        llama_seq_id seqId;
        Napi::ObjectReference handleRef;  // keeps the AddonContext from being collected meanwhile
        uint8_t* data = nullptr;
        size_t size = 0;
};

class SetSequenceStateWorker : public PromiseWorker {
    public:
        SetSequenceStateWorker(Napi::Env env, const Napi::Object& handle, const LlamaFunctions& functions,
                llama_context* ctx, llama_seq_id seqId, const Napi::Uint8Array& blob)
            : PromiseWorker(env, "WeftSetSequenceState"), functions(functions), ctx(ctx), seqId(seqId),
              handleRef(Napi::Persistent(handle)), blobRef(Napi::Persistent(blob.As<Napi::Object>())),
              data(blob.Data()), size(blob.ByteLength()) {}

    protected:
        void Run() override {
            bytesRead = functions.llama_state_seq_set_data(ctx, data, size, seqId);
            if (bytesRead == 0)
                throw std::runtime_error(
                    "llama_state_seq_set_data rejected the " + std::to_string(size) + "-byte state blob for sequence " +
                    std::to_string(seqId) + ": it is truncated or corrupt, comes from another model, or was saved from a " +
                    "context with a different flash-attention setting (V layout), KV cache type or stream layout, or " +
                    "does not fit the free cells; llama.cpp cleared the destination sequence (details in llama.cpp's log)");
        }

        void OnOK() override {
            deferred.Resolve(Napi::Number::New(Env(), (double) bytesRead));
        }

    private:
        const LlamaFunctions& functions;
        llama_context* ctx;
        llama_seq_id seqId;
        Napi::ObjectReference handleRef;
        Napi::ObjectReference blobRef;  // keeps the bytes alive while the worker reads them
        const uint8_t* data;
        size_t size;
        size_t bytesRead = 0;
};

} // namespace

Napi::Value GetSequenceState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return promiseOf(env, [&]() -> Napi::Value {
        const LlamaFunctions& functions = requireLlamaFunctions();
        llama_context* ctx = contextOfHandle(info[0], "context handle");
        llama_seq_id seqId = sequenceArgument(functions, ctx, info[1]);
        auto* worker = new GetSequenceStateWorker(env, info[0].As<Napi::Object>(), functions, ctx, seqId);
        Napi::Promise promise = worker->Promise();
        worker->Queue();
        return promise;
    });
}

Napi::Value SetSequenceState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return promiseOf(env, [&]() -> Napi::Value {
        const LlamaFunctions& functions = requireLlamaFunctions();
        llama_context* ctx = contextOfHandle(info[0], "context handle");
        llama_seq_id seqId = sequenceArgument(functions, ctx, info[1]);

        if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
            throw Napi::TypeError::New(env, "state must be a Buffer or Uint8Array");
        Napi::Uint8Array blob = info[2].As<Napi::Uint8Array>();
        if (blob.ByteLength() < 8)
            throw Napi::Error::New(env, "the state blob is " + std::to_string(blob.ByteLength()) +
                " bytes: too short to be a llama.cpp sequence state (at least the 8-byte header is needed)");
        uint32_t magic;
        std::memcpy(&magic, blob.Data(), sizeof(magic));
        if (magic != stateBlobMagic) {
            char found[16];
            std::snprintf(found, sizeof(found), "0x%08x", magic);
            throw Napi::Error::New(env, std::string("the state blob does not start with llama.cpp's in-memory sequence "
                "state magic 0xaf143cd8 (found ") + found + "): not a blob from getSequenceState");
        }

        auto* worker = new SetSequenceStateWorker(env, info[0].As<Napi::Object>(), functions, ctx, seqId, blob);
        Napi::Promise promise = worker->Promise();
        worker->Queue();
        return promise;
    });
}
