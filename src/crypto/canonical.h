// Canonical byte encoding of signed and hashed structures (docs/formats/canonical.md).
//
// Never sign or hash a protobuf serialization: it is not canonical. Every signed structure is
// encoded with CanonicalWriter, starting with a domain tag that names the structure and its
// version (e.g. "trustmoe/store/put/v1"), then its fields in a fixed order:
//   u8/u32/u64/i64  fixed width, big-endian
//   bytes/string    u32 big-endian length, then the bytes
//   digest          32 raw bytes (fixed width, no length)
//   domain tag      encoded as a string
// CanonicalReader decodes the same encoding and reports truncation or trailing bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/bytes.h"
#include "common/status.h"
#include "crypto/sha256.h"

namespace trustmoe::crypto {

class CanonicalWriter {
 public:
  explicit CanonicalWriter(std::string_view domain);

  CanonicalWriter& U8(uint8_t v);
  CanonicalWriter& U32(uint32_t v);
  CanonicalWriter& U64(uint64_t v);
  CanonicalWriter& I64(int64_t v);
  CanonicalWriter& Bool(bool v);
  CanonicalWriter& Blob(ByteSpan v);         // length-prefixed
  CanonicalWriter& Str(std::string_view v);  // length-prefixed
  CanonicalWriter& Fixed(const Digest& v);   // 32 raw bytes

  const Bytes& bytes() const { return out_; }
  Bytes Take() { return std::move(out_); }
  // SHA-256 of the encoding.
  Digest Hash() const;

 private:
  Bytes out_;
};

class CanonicalReader {
 public:
  // Reads `data`, which must outlive the reader. Call ExpectDomain first. Every method returns
  // InvalidArgument, saying what and at which offset, on truncated input, a declared length
  // above its bound or an out-of-range value; after an error the reader should be discarded.
  explicit CanonicalReader(ByteSpan data) : data_(data) {}

  // InvalidArgument unless the next field is the string `domain`.
  Status ExpectDomain(std::string_view domain);
  Result<uint8_t> U8();
  Result<uint32_t> U32();
  Result<uint64_t> U64();
  Result<int64_t> I64();
  Result<bool> Bool();  // only 0 and 1 are accepted
  // `max_bytes` bounds the declared length (hostile input).
  Result<Bytes> Blob(uint32_t max_bytes);
  Result<std::string> Str(uint32_t max_bytes);
  Result<Digest> Fixed();
  // InvalidArgument if bytes remain.
  Status ExpectEnd() const;

 private:
  Status Need(size_t n) const;
  ByteSpan data_;
  size_t pos_ = 0;
};

}  // namespace trustmoe::crypto
