// An AsyncWorker that settles a promise: blocking work runs in Execute() on the libuv pool, any exception there
// (SetError or a thrown std::exception) rejects, and functions that fail before queueing return a rejected promise.
#pragma once

#include <cmath>
#include <cstdint>
#include <exception>
#include <string>

#include <napi.h>

class PromiseWorker : public Napi::AsyncWorker {
    public:
        explicit PromiseWorker(Napi::Env env, const char* name)
            : Napi::AsyncWorker(env, name), deferred(Napi::Promise::Deferred::New(env)) {}

        Napi::Promise Promise() { return deferred.Promise(); }

    protected:
        Napi::Promise::Deferred deferred;

        /** Runs the work; exceptions become the rejection. */
        virtual void Run() = 0;

        void Execute() final {
            try {
                Run();
            } catch (const std::exception& error) {
                SetError(error.what());
            } catch (...) {
                SetError("unknown native error");
            }
        }

        void OnError(const Napi::Error& error) override {
            deferred.Reject(error.Value());
        }
};

/** Runs `start` (which validates arguments on the JS thread and queues a worker); a throw becomes a rejected promise. */
template <typename Start>
Napi::Value promiseOf(Napi::Env env, Start start) {
    try {
        return start();
    } catch (const Napi::Error& error) {
        Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
        deferred.Reject(error.Value());
        return deferred.Promise();
    } catch (const std::exception& error) {
        Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
        deferred.Reject(Napi::Error::New(env, error.what()).Value());
        return deferred.Promise();
    }
}
