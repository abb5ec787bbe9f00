#include "kv_splice_plan.h"

#include <string>

#include "napi_args.h"
#include "state_blob.h"

namespace splice {

Plan readPlan(Napi::Env env, const LlamaFunctions& functions, llama_context* ctx, const Napi::Value& seqValue, const Napi::Object& spec) {
    Plan plan;
    int64_t maxSequence = (int64_t) functions.llama_n_seq_max(ctx) - 1;
    plan.seqId = (llama_seq_id) integerArgument(seqValue, "seqId", 0, maxSequence);
    plan.nStream = (uint32_t) integerProperty(spec, "nStream", "spec", 1, 256);
    plan.stream = (uint32_t) integerProperty(spec, "stream", "spec", 0, (int64_t) plan.nStream - 1);
    plan.vTrans = property(spec, "vTrans", "spec").ToBoolean().Value();
    plan.threads = (uint32_t) integerProperty(spec, "threads", "spec", 1, 256);
    plan.pinned = !spec.Has("pinned") || spec.Get("pinned").ToBoolean().Value();

    plan.rope = readRopeSpec(env, spec);

    Napi::Value layersValue = property(spec, "layers", "spec");
    if (!layersValue.IsArray())
        throw Napi::TypeError::New(env, "spec.layers must be an array");
    Napi::Array layers = layersValue.As<Napi::Array>();
    for (uint32_t il = 0; il < layers.Length(); il++) {
        std::string where = "spec.layers[" + std::to_string(il) + "]";
        Napi::Object layer = layers.Get(il).As<Napi::Object>();
        LayerShape shape;
        shape.kType = (int32_t) integerProperty(layer, "kType", where, 0, 1);
        shape.kRowSize = (uint64_t) integerProperty(layer, "kRowSize", where, 1, 1ll << 32);
        shape.vType = (int32_t) integerProperty(layer, "vType", where, 0, 1);
        if (plan.vTrans) {
            shape.vElemSize = (uint32_t) integerProperty(layer, "vElemSize", where, 2, 4);
            shape.nEmbdV = (uint32_t) integerProperty(layer, "nEmbdV", where, 1, 1 << 24);
        } else {
            shape.vRowSize = (uint64_t) integerProperty(layer, "vRowSize", where, 1, 1ll << 32);
        }
        const uint64_t elemSize = shape.kType == typeF16 ? 2 : 4;
        if (plan.rope.kind != RopeKind::None && (shape.kRowSize % elemSize != 0 || (shape.kRowSize / elemSize) % (uint64_t) plan.rope.headDim != 0))
            throw Napi::RangeError::New(env, where + ": a K row of " + std::to_string(shape.kRowSize) + " bytes is not a whole number of " +
                std::to_string(plan.rope.headDim) + "-element heads");
        plan.layers.push_back(shape);
    }

    Napi::Value partsValue = property(spec, "parts", "spec");
    if (!partsValue.IsArray())
        throw Napi::TypeError::New(env, "spec.parts must be an array");
    Napi::Array parts = partsValue.As<Napi::Array>();
    for (uint32_t p = 0; p < parts.Length(); p++) {
        std::string where = "spec.parts[" + std::to_string(p) + "]";
        Napi::Object object = parts.Get(p).As<Napi::Object>();
        Part part;
        Napi::Value positions = property(object, "positions", where);
        if (!positions.IsTypedArray() || positions.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
            throw Napi::TypeError::New(env, where + ".positions must be an Int32Array");
        Napi::Int32Array positionArray = positions.As<Napi::Int32Array>();
        if (object.Has("placeholder") && object.Get("placeholder").ToBoolean().Value()) {
            // cells for positions a later decode writes in full: placed in order with the resident parts, nothing copied
            ResidentPlacement placement;
            placement.cellCount = (uint32_t) positionArray.ElementLength();
            if (placement.cellCount == 0)
                throw Napi::RangeError::New(env, where + ": a placeholder part needs positions");
            placement.positions = positionArray.Data();
            plan.resident.push_back(placement);
            continue;
        }
        if (object.Has("resident") && !object.Get("resident").IsUndefined()) {
            ResidentPlacement placement;
            placement.kv = residentOfHandle(object.Get("resident"), where + ".resident", ctx);
            placement.cellCount = residentCellCount(*placement.kv);
            if (positionArray.ElementLength() != placement.cellCount)
                throw Napi::RangeError::New(env, where + ": " + std::to_string(positionArray.ElementLength()) + " positions for a resident KV of " +
                    std::to_string(placement.cellCount) + " cells");
            placement.positions = positionArray.Data();
            placement.delta = (int32_t) integerProperty(object, "delta", where, -(1ll << 30), 1ll << 30);
            plan.resident.push_back(placement);
            continue;
        }
        part.positions = positionArray.Data();
        part.cellCount = (uint32_t) positionArray.ElementLength();
        part.delta = (int32_t) integerProperty(object, "delta", where, -(1ll << 30), 1ll << 30);
        if (object.Has("coded") && !object.Get("coded").IsUndefined()) {
            Napi::Value coded = object.Get("coded");
            if (!coded.IsTypedArray() || coded.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
                throw Napi::TypeError::New(env, where + ".coded must be a Uint8Array");
            Napi::Uint8Array bytes = coded.As<Napi::Uint8Array>();
            part.coded = bytes.Data();
            part.codedBytes = bytes.ByteLength();
            // Decoded in place of rows: V in rows of F16 (flash attention), and the cells' positions one run, as K's
            // rotation table is made for a first position.
            if (plan.vTrans)
                throw Napi::TypeError::New(env, where + ": a coded part needs V in rows (flash attention on)");
            for (uint32_t c = 1; c < part.cellCount; c++)
                if (part.positions[c] != part.positions[0] + (int32_t) c)
                    throw Napi::RangeError::New(env, where + ": a coded part's positions must be consecutive");
            plan.anyCoded = true;
            plan.totalCells += part.cellCount;
            plan.parts.push_back(std::move(part));
            continue;
        }
        if (part.cellCount > 0) {
            Napi::Value kValue = property(object, "k", where), vValue = property(object, "v", where);
            if (!kValue.IsArray() || !vValue.IsArray() || kValue.As<Napi::Array>().Length() != layers.Length() ||
                    vValue.As<Napi::Array>().Length() != layers.Length())
                throw Napi::TypeError::New(env, where + ".k and .v must be arrays with one Uint8Array per layer");
            Napi::Array k = kValue.As<Napi::Array>(), v = vValue.As<Napi::Array>();
            for (uint32_t il = 0; il < layers.Length(); il++) {
                const LayerShape& shape = plan.layers[il];
                std::string layerWhere = where + " layer " + std::to_string(il);
                part.k.push_back(bytesOf(k.Get(il), (size_t) part.cellCount * shape.kRowSize, layerWhere + " K"));
                size_t vBytes = plan.vTrans ? (size_t) part.cellCount * shape.vElemSize * shape.nEmbdV : (size_t) part.cellCount * shape.vRowSize;
                part.v.push_back(bytesOf(v.Get(il), vBytes, layerWhere + " V"));
            }
        }
        plan.totalCells += part.cellCount;
        plan.parts.push_back(std::move(part));
    }
    if (spec.Has("overrides") && !spec.Get("overrides").IsUndefined() && !spec.Get("overrides").IsNull()) {
        Napi::Value overridesValue = spec.Get("overrides");
        if (!overridesValue.IsArray())
            throw Napi::TypeError::New(env, "spec.overrides must be an array");
        Napi::Array overrides = overridesValue.As<Napi::Array>();
        plan.overrides.reserve(overrides.Length());
        plan.overrideOf.assign(plan.layers.size(), nullptr);
        for (uint32_t i = 0; i < overrides.Length(); i++) {
            std::string where = "spec.overrides[" + std::to_string(i) + "]";
            Napi::Object object = overrides.Get(i).As<Napi::Object>();
            const size_t il = (size_t) integerProperty(object, "layer", where, 0, (int64_t) plan.layers.size() - 1);
            const LayerShape& shape = plan.layers[il];
            LayerOverride exact;
            exact.nEmbdK = (uint32_t) (shape.kRowSize / (shape.kType == typeF16 ? 2 : 4));
            exact.nEmbdV = plan.vTrans ? shape.nEmbdV : (uint32_t) (shape.vRowSize / (shape.vType == typeF16 ? 2 : 4));
            size_t kLength = 0, vLength = 0;
            exact.k = floatsOf(property(object, "k", where), where + ".k", kLength);
            exact.v = floatsOf(property(object, "v", where), where + ".v", vLength);
            if (kLength % exact.nEmbdK != 0 || vLength % exact.nEmbdV != 0 || kLength / exact.nEmbdK != vLength / exact.nEmbdV)
                throw Napi::RangeError::New(env, where + ": K and V must hold the same whole number of rows of this layer's " +
                    std::to_string(exact.nEmbdK) + " and " + std::to_string(exact.nEmbdV) + " elements");
            exact.nTokens = kLength / exact.nEmbdK;
            if (plan.overrideOf[il] != nullptr)
                throw Napi::RangeError::New(env, where + ": layer " + std::to_string(il) + " is overridden twice");
            plan.overrides.push_back(exact);
            plan.overrideOf[il] = &plan.overrides.back();
        }
    }
    if (plan.anyCoded) {
        for (const LayerShape& shape : plan.layers)
            if (shape.kType != typeF16 || shape.vType != typeF16)
                throw Napi::TypeError::New(env, "coded parts need an F16 cache (the codec's type)");
        if (!plan.overrides.empty())
            throw Napi::TypeError::New(env, "spec.overrides apply to parts with rows: a plan with coded parts takes none");
        plan.codedFingerprint = bytesOf(property(spec, "codedFingerprint", "spec"), 16, "spec.codedFingerprint");
    }
    uint64_t residentCells = 0;
    for (const ResidentPlacement& placement : plan.resident)
        residentCells += placement.cellCount;
    if (plan.totalCells + residentCells == 0)
        throw Napi::RangeError::New(env, "spec.parts hold no cells: nothing to splice");
    if (plan.layers.empty())
        throw Napi::RangeError::New(env, "spec.layers is empty");
    if (residentCells > 0 && !plan.overrides.empty())
        throw Napi::TypeError::New(env, "spec.overrides apply to host parts only: a plan with resident parts takes none");
    if (plan.totalCells + residentCells > (uint64_t) functions.llama_n_ctx(ctx))
        throw Napi::RangeError::New(env, std::to_string(plan.totalCells + residentCells) + " cells do not fit the context's " +
            std::to_string(functions.llama_n_ctx(ctx)) + " cells");
    return plan;
}

} // namespace splice
