// Reading a JS argument or spec object with an error that names the bad field; shared by every entry point.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include <napi.h>

/** A JS integer argument in [min, max]; throws a TypeError naming it otherwise. */
inline int64_t integerArgument(const Napi::Value& value, const char* name, int64_t min, int64_t max) {
    Napi::Env env = value.Env();
    if (!value.IsNumber())
        throw Napi::TypeError::New(env, std::string(name) + " must be an integer");
    double number = value.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(number) || std::floor(number) != number || number < (double) min || number > (double) max)
        throw Napi::RangeError::New(env, std::string(name) + " must be an integer in [" + std::to_string(min) + ", " +
            std::to_string(max) + "], got " + value.ToString().Utf8Value());
    return (int64_t) number;
}

/** `object[name]`; throws a TypeError naming `where.name` when it is missing. */
inline Napi::Value property(const Napi::Object& object, const char* name, const std::string& where) {
    if (!object.Has(name))
        throw Napi::TypeError::New(object.Env(), where + "." + name + " is missing");
    return object.Get(name);
}

inline int64_t integerProperty(const Napi::Object& object, const char* name, const std::string& where, int64_t min, int64_t max) {
    std::string label = where + "." + name;
    return integerArgument(property(object, name, where), label.c_str(), min, max);
}

/** The bytes of a Uint8Array of exactly `expected` bytes. */
inline const uint8_t* bytesOf(const Napi::Value& value, size_t expected, const std::string& what) {
    if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
        throw Napi::TypeError::New(value.Env(), what + " must be a Uint8Array");
    Napi::Uint8Array array = value.As<Napi::Uint8Array>();
    if (array.ByteLength() != expected)
        throw Napi::RangeError::New(value.Env(), what + " holds " + std::to_string(array.ByteLength()) + " bytes, expected " +
            std::to_string(expected));
    return array.Data();
}

/** The elements of a Float32Array and their count. */
inline const float* floatsOf(const Napi::Value& value, const std::string& what, size_t& length) {
    if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
        throw Napi::TypeError::New(value.Env(), what + " must be a Float32Array");
    Napi::Float32Array array = value.As<Napi::Float32Array>();
    length = array.ElementLength();
    return array.Data();
}
