// Invariant checks that stay on in release builds: a broken invariant is a bug, and a process
// whose state is wrong must stop rather than go on (and, in a validator, vote).
#pragma once

#include <cstdio>
#include <cstdlib>

#define TRUSTMOE_CHECK(cond)                                                            \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);     \
      std::abort();                                                                     \
    }                                                                                   \
  } while (0)
