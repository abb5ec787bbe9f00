#include "addon_handles.h"

#include <initializer_list>
#include <string>

#include "AddonContext.h"
#include "AddonModel.h"
#include "llama_functions.h"

namespace {

// napi_unwrap trusts the caller about the wrapped type, so first check the object looks like the expected class.
bool hasMethods(const Napi::Object& object, std::initializer_list<const char*> names) {
    for (const char* name : names) {
        if (!object.Has(name) || !object.Get(name).IsFunction())
            return false;
    }
    return true;
}

Napi::Object expectObject(const Napi::Value& value, const char* argumentName, const char* what) {
    if (!value.IsObject())
        throw Napi::TypeError::New(value.Env(), std::string(argumentName) + " must be " + what);
    return value.As<Napi::Object>();
}

AddonModel* unwrapModel(const Napi::Object& object) {
    if (!hasMethods(object, {"tokenize", "getTrainContextSize", "getTotalSize", "dispose"}))
        return nullptr;
    return Napi::ObjectWrap<AddonModel>::Unwrap(object);
}

} // namespace

llama_context* contextOfHandle(const Napi::Value& handle, const char* argumentName) {
    Napi::Env env = handle.Env();
    Napi::Object object = expectObject(handle, argumentName, "a node-llama-cpp context handle (LlamaContext._ctx)");
    if (!hasMethods(object, {"decodeBatch", "saveSequenceStateToFile", "getContextSize", "dispose"}))
        throw Napi::TypeError::New(env, std::string(argumentName) + " is not a node-llama-cpp context handle (LlamaContext._ctx)");

    AddonContext* context = Napi::ObjectWrap<AddonContext>::Unwrap(object);
    if (context == nullptr)
        throw Napi::TypeError::New(env, std::string(argumentName) + " is not a node-llama-cpp context handle (LlamaContext._ctx)");
    if (context->disposed || !context->contextLoaded || context->ctx == nullptr)
        throw Napi::Error::New(env, "the node-llama-cpp context is disposed or not loaded");

    // Cross-check the layout assumption: the context's model is the AddonModel's model.
    const LlamaFunctions& functions = requireLlamaFunctions();
    if (context->model == nullptr || functions.llama_get_model(context->ctx) != context->model->model)
        throw Napi::Error::New(env, "the node-llama-cpp context handle does not match this addon's view of AddonContext "
            "(node-llama-cpp version mismatch? rebuild the addon with scripts/build-native.mjs)");
    return context->ctx;
}

llama_model* modelOfHandle(const Napi::Value& handle, const char* argumentName) {
    Napi::Env env = handle.Env();
    Napi::Object object = expectObject(handle, argumentName, "a node-llama-cpp model handle (LlamaModel._model)");
    AddonModel* model = unwrapModel(object);
    if (model == nullptr)
        throw Napi::TypeError::New(env, std::string(argumentName) + " is not a node-llama-cpp model handle (LlamaModel._model)");
    if (model->disposed || !model->modelLoaded || model->model == nullptr)
        throw Napi::Error::New(env, "the node-llama-cpp model is disposed or not loaded");
    return model->model;
}

bool isModelHandleAlive(Napi::Env env, const Napi::Object& handle) {
    try {
        Napi::HandleScope scope(env);
        AddonModel* model = unwrapModel(handle);
        return model != nullptr && !model->disposed && model->modelLoaded && model->model != nullptr;
    } catch (...) {
        return false;
    }
}
