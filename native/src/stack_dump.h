#pragma once

// Diagnostics for a stuck process: with WEFT_NATIVE_STACKS=1 in the environment (Linux only), SIGUSR2 sent to one
// thread (tgkill) makes that thread print its native stack to stderr. scripts/gpu-run.sh's watchdog uses it on a
// machine without gdb. Does nothing otherwise.
void installStackDumperFromEnvironment();
