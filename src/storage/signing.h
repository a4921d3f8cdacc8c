// What store writers sign (docs/store.md). Shared by the service and the client so that both
// sides encode the same bytes.
#pragma once

#include <cstdint>
#include <string>

#include "common/bytes.h"
#include "crypto/cid.h"
#include "crypto/ed25519.h"

namespace trustmoe::storage {

inline constexpr std::string_view kPutDomain = "trustmoe/store/put/v1";
inline constexpr std::string_view kPinDomain = "trustmoe/store/pin/v1";
inline constexpr std::string_view kUnpinDomain = "trustmoe/store/unpin/v1";

Bytes PutSigningBytes(const crypto::Cid& cid, uint64_t size, const crypto::PublicKey& writer,
                      bool pin, int64_t timestamp_unix_ms);
Bytes PinSigningBytes(bool pin, const crypto::Cid& cid, const crypto::PublicKey& writer,
                      int64_t timestamp_unix_ms);

}  // namespace trustmoe::storage
