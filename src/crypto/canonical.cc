#include "crypto/canonical.h"

#include <algorithm>
#include <limits>

#include "common/check.h"

namespace trustmoe::crypto {

namespace {

// Longest domain tag quoted back in an error message.

void PutBigEndian(Bytes* out, uint64_t v, int width) {
  for (int shift = 8 * (width - 1); shift >= 0; shift -= 8) {
    out->push_back(static_cast<uint8_t>(v >> shift));
  }
}

uint64_t GetBigEndian(ByteSpan data, size_t pos, int width) {
  uint64_t v = 0;
  for (int i = 0; i < width; ++i) v = v << 8 | data[pos + i];
  return v;
}

}  // namespace

CanonicalWriter::CanonicalWriter(std::string_view domain) { Str(domain); }

CanonicalWriter& CanonicalWriter::U8(uint8_t v) {
  out_.push_back(v);
  return *this;
}

CanonicalWriter& CanonicalWriter::U32(uint32_t v) {
  PutBigEndian(&out_, v, 4);
  return *this;
}

CanonicalWriter& CanonicalWriter::U64(uint64_t v) {
  PutBigEndian(&out_, v, 8);
  return *this;
}

CanonicalWriter& CanonicalWriter::I64(int64_t v) {
  // Two's complement, big-endian.
  PutBigEndian(&out_, static_cast<uint64_t>(v), 8);
  return *this;
}

CanonicalWriter& CanonicalWriter::Bool(bool v) { return U8(v ? 1 : 0); }

CanonicalWriter& CanonicalWriter::Blob(ByteSpan v) {
  // A field longer than 4 GiB cannot be encoded; callers bound their fields far below this.
  TRUSTMOE_CHECK(v.size() <= std::numeric_limits<uint32_t>::max());
  U32(static_cast<uint32_t>(v.size()));
  out_.insert(out_.end(), v.begin(), v.end());
  return *this;
}

CanonicalWriter& CanonicalWriter::Str(std::string_view v) { return Blob(AsBytes(v)); }

CanonicalWriter& CanonicalWriter::Fixed(const Digest& v) {
  out_.insert(out_.end(), v.begin(), v.end());
  return *this;
}

Digest CanonicalWriter::Hash() const { return Sha256::Hash(out_); }

Status CanonicalReader::Need(size_t n) const {
  size_t remaining = data_.size() - pos_;
  if (n > remaining) {
    return Status::InvalidArgument("canonical encoding truncated: need " + std::to_string(n) +
                                   " bytes at offset " + std::to_string(pos_) + ", " +
                                   std::to_string(remaining) + " remain");
  }
  return Status::Ok();
}

Status CanonicalReader::ExpectDomain(std::string_view domain) {
  TRUSTMOE_ASSIGN_OR_RETURN(uint32_t len, U32());
  if (len != domain.size()) {
    return Status::InvalidArgument("wrong domain tag: expected \"" + std::string(domain) + "\" (" +
                                   std::to_string(domain.size()) + " bytes), found a tag of " +
                                   std::to_string(len) + " bytes");
  }
  TRUSTMOE_RETURN_IF_ERROR(Need(len));
  ByteSpan found = data_.subspan(pos_, len);
  ByteSpan expected = AsBytes(domain);
  if (!std::equal(found.begin(), found.end(), expected.begin(), expected.end())) {
    return Status::InvalidArgument("wrong domain tag: expected \"" + std::string(domain) +
                                   "\", found " + QuoteForMessage(found));
  }
  pos_ += len;
  return Status::Ok();
}

Result<uint8_t> CanonicalReader::U8() {
  TRUSTMOE_RETURN_IF_ERROR(Need(1));
  return data_[pos_++];
}

Result<uint32_t> CanonicalReader::U32() {
  TRUSTMOE_RETURN_IF_ERROR(Need(4));
  uint32_t v = static_cast<uint32_t>(GetBigEndian(data_, pos_, 4));
  pos_ += 4;
  return v;
}

Result<uint64_t> CanonicalReader::U64() {
  TRUSTMOE_RETURN_IF_ERROR(Need(8));
  uint64_t v = GetBigEndian(data_, pos_, 8);
  pos_ += 8;
  return v;
}

Result<int64_t> CanonicalReader::I64() {
  TRUSTMOE_ASSIGN_OR_RETURN(uint64_t v, U64());
  return static_cast<int64_t>(v);
}

Result<bool> CanonicalReader::Bool() {
  TRUSTMOE_ASSIGN_OR_RETURN(uint8_t v, U8());
  // Only 0 and 1: any other byte would be a second encoding of the same value.
  if (v > 1) {
    return Status::InvalidArgument("canonical bool at offset " + std::to_string(pos_ - 1) + " is " +
                                   std::to_string(v) + ", not 0 or 1");
  }
  return v == 1;
}

Result<Bytes> CanonicalReader::Blob(uint32_t max_bytes) {
  TRUSTMOE_ASSIGN_OR_RETURN(uint32_t len, U32());
  if (len > max_bytes) {
    return Status::InvalidArgument("canonical field at offset " + std::to_string(pos_ - 4) +
                                   " declares " + std::to_string(len) +
                                   " bytes, more than the limit of " + std::to_string(max_bytes));
  }
  TRUSTMOE_RETURN_IF_ERROR(Need(len));
  Bytes out(data_.begin() + pos_, data_.begin() + pos_ + len);
  pos_ += len;
  return out;
}

Result<std::string> CanonicalReader::Str(uint32_t max_bytes) {
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes raw, Blob(max_bytes));
  return std::string(raw.begin(), raw.end());
}

Result<Digest> CanonicalReader::Fixed() {
  Digest out{};
  TRUSTMOE_RETURN_IF_ERROR(Need(out.size()));
  std::copy(data_.begin() + pos_, data_.begin() + pos_ + out.size(), out.begin());
  pos_ += out.size();
  return out;
}

Status CanonicalReader::ExpectEnd() const {
  if (pos_ != data_.size()) {
    return Status::InvalidArgument("canonical encoding has " + std::to_string(data_.size() - pos_) +
                                   " trailing bytes at offset " + std::to_string(pos_));
  }
  return Status::Ok();
}

}  // namespace trustmoe::crypto
