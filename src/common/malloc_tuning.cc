#include "common/malloc_tuning.h"

#include <malloc.h>

namespace trustmoe {

void TuneMallocForStreaming() {
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
}

}  // namespace trustmoe
