// Allocator settings for processes that stream megabyte-sized messages.
#pragma once

namespace trustmoe {

// glibc serves allocations above its mmap threshold with a fresh mmap and returns them with
// munmap, so every 1 MiB chunk message costs page faults and page zeroing. Raise the mmap and
// trim thresholds so such buffers are reused from the heap. Call once at the start of main().
void TuneMallocForStreaming();

}  // namespace trustmoe
