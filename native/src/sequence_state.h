#pragma once

#include <napi.h>

/** getSequenceState(contextHandle, seqId): Promise<Buffer> */
Napi::Value GetSequenceState(const Napi::CallbackInfo& info);

/** setSequenceState(contextHandle, seqId, blob): Promise<number> (bytes read) */
Napi::Value SetSequenceState(const Napi::CallbackInfo& info);
