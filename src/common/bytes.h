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

// Untrusted bytes made printable for an error message: in double quotes, printable ASCII kept,
// everything else (and quote and backslash) as \xNN, cut after `max_bytes` with "...".
std::string QuoteForMessage(std::string_view raw, size_t max_bytes = 64);
inline std::string QuoteForMessage(ByteSpan raw, size_t max_bytes = 64) {
  return QuoteForMessage(std::string_view(reinterpret_cast<const char*>(raw.data()), raw.size()),
                         max_bytes);
}

// Decodes hex (either case). InvalidArgument on odd length or a non-hex character.
Result<Bytes> FromHex(std::string_view hex);

}  // namespace trustmoe
