// N-API side of the KV codec (kv_codec.h): kvCodecEncode, kvCodecDecode, kvCodecDecodeSync, kvCodecPeek, kvCodecLevels.
#pragma once

#include <napi.h>

Napi::Value KvCodecEncode(const Napi::CallbackInfo& info);
Napi::Value KvCodecDecode(const Napi::CallbackInfo& info);
Napi::Value KvCodecDecodeSync(const Napi::CallbackInfo& info);
Napi::Value KvCodecPeek(const Napi::CallbackInfo& info);
Napi::Value KvCodecLevels(const Napi::CallbackInfo& info);
