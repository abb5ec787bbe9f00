#pragma once

// Diagnostics for a stuck process, in the debug build only (scripts/build-native.mjs --debug): SIGUSR2 sent to one
// thread (tgkill) makes that thread print its native stack to stderr (Linux only). scripts/gpu-run.sh's watchdog uses
// it on a machine without gdb.
void installStackDumper();
