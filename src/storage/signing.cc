#include "storage/signing.h"

#include "crypto/canonical.h"

namespace trustmoe::storage {

Bytes PutSigningBytes(const crypto::Cid& cid, uint64_t size, const crypto::PublicKey& writer,
                      bool pin, int64_t timestamp_unix_ms) {
  crypto::CanonicalWriter w(kPutDomain);
  w.Fixed(cid.root).U64(size).Fixed(writer.bytes()).Bool(pin).I64(timestamp_unix_ms);
  return w.Take();
}

Bytes PinSigningBytes(bool pin, const crypto::Cid& cid, const crypto::PublicKey& writer,
                      int64_t timestamp_unix_ms) {
  crypto::CanonicalWriter w(pin ? kPinDomain : kUnpinDomain);
  w.Fixed(cid.root).Fixed(writer.bytes()).I64(timestamp_unix_ms);
  return w.Take();
}

}  // namespace trustmoe::storage
