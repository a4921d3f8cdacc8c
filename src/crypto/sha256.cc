#include "crypto/sha256.h"

#include <algorithm>

#include <openssl/evp.h>

#include "common/check.h"

namespace trustmoe::crypto {

namespace {

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;

// The SHA-256 implementation, fetched once: OpenSSL 3 otherwise looks it up on every
// initialisation, which costs more than hashing a 65-byte tree node. Intentionally never freed.
const EVP_MD* Sha256Md() {
  static const EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  TRUSTMOE_CHECK(md != nullptr);
  return md;
}

// SHA-256 over in-memory data fails only when OpenSSL cannot allocate or is broken: both are
// unrecoverable, so they stop the process rather than yield a wrong digest.
void StartOrDie(EVP_MD_CTX* ctx) {
  TRUSTMOE_CHECK(EVP_DigestInit_ex2(ctx, Sha256Md(), nullptr) == 1);
}

}  // namespace

struct Sha256::Impl {
  MdCtxPtr ctx;
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  impl_->ctx.reset(EVP_MD_CTX_new());
  TRUSTMOE_CHECK(impl_->ctx != nullptr);
  StartOrDie(impl_->ctx.get());
}

Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::Update(ByteSpan data) {
  TRUSTMOE_CHECK(impl_ != nullptr);  // use after move
  if (data.empty()) return;
  TRUSTMOE_CHECK(EVP_DigestUpdate(impl_->ctx.get(), data.data(), data.size()) == 1);
}

Digest Sha256::Final() {
  TRUSTMOE_CHECK(impl_ != nullptr);  // use after move
  Digest out{};
  unsigned int len = 0;
  TRUSTMOE_CHECK(EVP_DigestFinal_ex(impl_->ctx.get(), out.data(), &len) == 1);
  TRUSTMOE_CHECK(len == out.size());
  StartOrDie(impl_->ctx.get());
  return out;
}

Digest Sha256::Hash(ByteSpan data) {
  Digest out{};
  unsigned int len = 0;
  TRUSTMOE_CHECK(EVP_Digest(data.data(), data.size(), out.data(), &len, Sha256Md(), nullptr) == 1);
  TRUSTMOE_CHECK(len == out.size());
  return out;
}

std::string DigestHex(const Digest& d) { return ToHex(d); }

Result<Digest> DigestFromHex(std::string_view hex) {
  if (hex.size() != 64) {
    return Status::InvalidArgument("digest must be 64 hex digits, got " +
                                   std::to_string(hex.size()) + " characters");
  }
  Result<Bytes> raw = FromHex(hex);
  if (!raw.ok()) return raw.status().WithContext("digest");
  Digest out{};
  std::copy(raw->begin(), raw->end(), out.begin());
  return out;
}

}  // namespace trustmoe::crypto
