// Ed25519 (RFC 8032) identity keys: generation, PEM files, signing and verification.
// Backed by OpenSSL. Keys are immutable after construction; all methods are thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "common/bytes.h"
#include "common/status.h"

namespace trustmoe::crypto {

using Signature = std::array<uint8_t, 64>;

class PublicKey {
 public:
  PublicKey() = default;  // all-zero key; verifies nothing
  // InvalidArgument unless `raw` is 32 bytes.
  static Result<PublicKey> FromBytes(ByteSpan raw);
  // 64 hex digits, as printed by Hex().
  static Result<PublicKey> FromHex(std::string_view hex);
  // "-----BEGIN PUBLIC KEY-----" (SubjectPublicKeyInfo) text; InvalidArgument if it is not an
  // Ed25519 public key.
  static Result<PublicKey> FromPem(std::string_view pem);
  static Result<PublicKey> LoadPem(const std::string& path);

  const std::array<uint8_t, 32>& bytes() const { return raw_; }
  std::string Hex() const;
  std::string ToPem() const;

  // True when `sig` is a valid signature of `message` under this key.
  bool Verify(ByteSpan message, const Signature& sig) const;
  // Same, with a signature of any length (false unless 64 bytes).
  bool Verify(ByteSpan message, ByteSpan sig) const;

  bool operator==(const PublicKey&) const = default;
  auto operator<=>(const PublicKey&) const = default;

 private:
  std::array<uint8_t, 32> raw_{};
};

class PrivateKey {
 public:
  // An all-zero seed; obtain real keys from Generate, FromSeed, FromPem or LoadPem.
  PrivateKey() = default;
  PrivateKey(const PrivateKey&) = default;
  PrivateKey(PrivateKey&&) noexcept = default;
  PrivateKey& operator=(const PrivateKey&) = default;
  PrivateKey& operator=(PrivateKey&&) noexcept = default;
  // Zeroes the seed.
  ~PrivateKey();

  // 32 random bytes from OpenSSL's private DRBG as the seed.
  static Result<PrivateKey> Generate();
  // From the 32-byte RFC 8032 seed (the "secret key" of the test vectors).
  static Result<PrivateKey> FromSeed(ByteSpan seed);
  // PKCS#8 "-----BEGIN PRIVATE KEY-----" text.
  static Result<PrivateKey> FromPem(std::string_view pem);
  // Loads a PEM file. PermissionDenied, naming the file, its mode and the fix (chmod 600), when
  // the file is readable, writable or executable by group or others (st_mode & 077); NotFound
  // when it does not exist; InvalidArgument when it is not an Ed25519 PKCS#8 PEM.
  static Result<PrivateKey> LoadPem(const std::string& path);

  // Writes the key as PKCS#8 PEM with mode 0600, atomically (temporary file, fsync, rename).
  // AlreadyExists when `path` exists and `overwrite` is false.
  Status SavePem(const std::string& path, bool overwrite = false) const;
  std::string ToPem() const;

  const PublicKey& public_key() const { return public_key_; }
  Signature Sign(ByteSpan message) const;

 private:
  std::array<uint8_t, 32> seed_{};
  PublicKey public_key_;
};

}  // namespace trustmoe::crypto
