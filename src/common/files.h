// Small file helpers with Status errors that name the path.
#pragma once

#include <cstdint>
#include <string>

#include "common/bytes.h"
#include "common/status.h"

namespace trustmoe {

// Reads a whole file. NotFound / PermissionDenied / Internal naming the path; ResourceExhausted
// when it is larger than `max_bytes`.
Result<std::string> ReadFile(const std::string& path, uint64_t max_bytes = 64ull << 20);

// Writes `data` to `path` atomically: a temporary file in the same directory with `mode`,
// fsync, rename over `path`, fsync of the directory. Nothing is left half-written.
Status WriteFileAtomic(const std::string& path, std::string_view data, uint32_t mode = 0644);

// Creates a directory and its parents (like mkdir -p) with `mode` for the ones created.
Status MakeDirs(const std::string& path, uint32_t mode = 0755);

}  // namespace trustmoe
