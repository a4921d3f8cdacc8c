// SIGTERM / SIGINT handling for daemons: block the signals in every thread and wait for one on
// a dedicated thread, so shutdown runs as normal code, not in a signal handler.
#pragma once

#include <functional>

namespace trustmoe {

// Call first thing in main(), before any thread starts: blocks SIGTERM, SIGINT and SIGHUP in
// the calling thread (and so in every thread it later creates).
void BlockShutdownSignals();

// Blocks until SIGTERM or SIGINT arrives (or `RequestShutdown` is called); returns the signal
// number (0 for a request).
int WaitForShutdownSignal();

// Wakes WaitForShutdownSignal from another thread (tests, fatal errors).
void RequestShutdown();

}  // namespace trustmoe
