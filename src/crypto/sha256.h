// SHA-256 (FIPS 180-4), streaming and one-shot. Backed by OpenSSL; thread-compatible (one
// Sha256 object per thread), the free functions are thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "common/bytes.h"
#include "common/status.h"

namespace trustmoe::crypto {

using Digest = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  // Appends bytes to the message.
  void Update(ByteSpan data);
  // Returns the digest of everything appended since construction or the last Final(), and
  // resets the object for a new message.
  Digest Final();

  static Digest Hash(ByteSpan data);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::string DigestHex(const Digest& d);
// InvalidArgument unless `hex` is exactly 64 hex digits.
Result<Digest> DigestFromHex(std::string_view hex);

}  // namespace trustmoe::crypto
