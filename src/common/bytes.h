// Byte helpers: spans, hex.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace trustmoe {

using ByteSpan = std::span<const uint8_t>;
using Bytes = std::vector<uint8_t>;

inline ByteSpan AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Lower-case hex of `data`.
std::string ToHex(ByteSpan data);

// Decodes hex (either case). InvalidArgument on odd length or a non-hex character.
Result<Bytes> FromHex(std::string_view hex);

}  // namespace trustmoe
