#include "crypto/ed25519.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>

#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "common/check.h"
#include "crypto/openssl_util.h"

namespace trustmoe::crypto {

using internal::BioPtr;
using internal::MdCtxPtr;
using internal::OpenSslError;
using internal::PkeyPtr;

namespace {

constexpr size_t kKeyBytes = 32;

// Zeroes a string that held secret material, then empties it.
void Wipe(std::string* s) {
  if (!s->empty()) OPENSSL_cleanse(s->data(), s->size());
  s->clear();
}

// A valid non-null pointer for an empty message (OpenSSL wants one).
const uint8_t* MessagePtr(ByteSpan message) {
  static constexpr uint8_t kEmpty = 0;
  return message.empty() ? &kEmpty : message.data();
}

Status ErrnoStatus(int err, const std::string& what, const std::string& path) {
  std::string msg = what + " " + path + ": " + std::strerror(err);
  if (err == ENOENT || err == ENOTDIR) return Status::NotFound(std::move(msg));
  if (err == EACCES || err == EPERM) return Status::PermissionDenied(std::move(msg));
  if (err == EEXIST) return Status::AlreadyExists(std::move(msg));
  return Status::Internal(std::move(msg));
}

std::string OctalMode(mode_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

// Reads a whole regular file of at most internal::kPemBytesMax bytes from an open descriptor.
Result<std::string> ReadSmallFile(int fd, const std::string& path) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status st = ErrnoStatus(errno, "cannot read", path);
      Wipe(&out);
      OPENSSL_cleanse(buf, sizeof(buf));
      return st;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > internal::kPemBytesMax) {
      Wipe(&out);
      OPENSSL_cleanse(buf, sizeof(buf));
      return Status::InvalidArgument("key file " + path + " is larger than " +
                                     std::to_string(internal::kPemBytesMax) +
                                     " bytes: not a PEM key");
    }
  }
  OPENSSL_cleanse(buf, sizeof(buf));
  return out;
}

// Opens `path` for reading and checks that it is a regular file; returns the descriptor.
Result<int> OpenRegular(const std::string& path, struct stat* st) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "cannot open key file", path);
  if (::fstat(fd, st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus(err, "cannot stat key file", path);
  }
  if (!S_ISREG(st->st_mode)) {
    ::close(fd);
    return Status::InvalidArgument("key file " + path + " is not a regular file");
  }
  return fd;
}

PkeyPtr RawPublic(const std::array<uint8_t, 32>& raw) {
  return PkeyPtr(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, raw.data(), raw.size()));
}

PkeyPtr RawPrivate(const std::array<uint8_t, 32>& seed) {
  return PkeyPtr(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data(), seed.size()));
}

// Writes all of `data` to `fd`.
bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) errno = EIO;  // a zero-byte write of a non-empty buffer: report an I/O error
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string DirName(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Moves `tmp` to `path`; with `overwrite` false fails with EEXIST if `path` exists, atomically
// where the file system supports RENAME_NOREPLACE.
int MoveIntoPlace(const std::string& tmp, const std::string& path, bool overwrite) {
  if (overwrite) return ::rename(tmp.c_str(), path.c_str());
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS) return -1;
  // The file system lacks RENAME_NOREPLACE: a hard link also refuses to replace.
  if (::link(tmp.c_str(), path.c_str()) != 0) return -1;
  ::unlink(tmp.c_str());
  return 0;
}

// Writes `data` to `path` with mode 0600: temporary file in the same directory, fsync, rename,
// fsync of the directory.
Status WritePrivateFileAtomic(const std::string& path, std::string_view data, bool overwrite) {
  struct stat st {};
  if (!overwrite && ::lstat(path.c_str(), &st) == 0) {
    return Status::AlreadyExists("key file " + path + " already exists; refusing to overwrite it");
  }
  std::string tmp = path + ".tmp.XXXXXX";
  int fd = ::mkostemp(tmp.data(), O_CLOEXEC);  // creates the file with mode 0600
  if (fd < 0) return ErrnoStatus(errno, "cannot create a temporary file for", path);
  auto fail = [&](const std::string& what) {
    Status s = ErrnoStatus(errno, what, tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return s;
  };
  if (::fchmod(fd, 0600) != 0) return fail("cannot chmod 600");
  if (!WriteAll(fd, data)) return fail("cannot write");
  if (::fsync(fd) != 0) return fail("cannot fsync");
  if (::close(fd) != 0) {
    Status s = ErrnoStatus(errno, "cannot close", tmp);
    ::unlink(tmp.c_str());
    return s;
  }
  if (MoveIntoPlace(tmp, path, overwrite) != 0) {
    Status s = errno == EEXIST ? Status::AlreadyExists("key file " + path +
                                                       " already exists; refusing to overwrite it")
                               : ErrnoStatus(errno, "cannot rename " + tmp + " to", path);
    ::unlink(tmp.c_str());
    return s;
  }
  int dir = ::open(DirName(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return ErrnoStatus(errno, "cannot open the directory of", path);
  int rc = ::fsync(dir);
  int err = errno;
  ::close(dir);
  if (rc != 0) return ErrnoStatus(err, "cannot fsync the directory of", path);
  return Status::Ok();
}

}  // namespace

// ---- PublicKey ----

Result<PublicKey> PublicKey::FromBytes(ByteSpan raw) {
  if (raw.size() != kKeyBytes) {
    return Status::InvalidArgument("Ed25519 public key must be 32 bytes, got " +
                                   std::to_string(raw.size()));
  }
  PublicKey key;
  std::copy(raw.begin(), raw.end(), key.raw_.begin());
  return key;
}

Result<PublicKey> PublicKey::FromHex(std::string_view hex) {
  if (hex.size() != 2 * kKeyBytes) {
    return Status::InvalidArgument("Ed25519 public key must be 64 hex digits, got " +
                                   std::to_string(hex.size()) + " characters");
  }
  Result<Bytes> raw = trustmoe::FromHex(hex);
  if (!raw.ok()) return raw.status().WithContext("Ed25519 public key");
  return FromBytes(*raw);
}

Result<PublicKey> PublicKey::FromPem(std::string_view pem) {
  if (pem.size() > internal::kPemBytesMax) {
    return Status::InvalidArgument("public key PEM is larger than " +
                                   std::to_string(internal::kPemBytesMax) + " bytes");
  }
  BioPtr bio = internal::MemBio(pem);
  if (!bio) return Status::Internal("BIO_new_mem_buf failed: " + OpenSslError());
  PkeyPtr pkey(PEM_read_bio_PUBKEY(bio.get(), nullptr, internal::NoPassword, nullptr));
  if (!pkey) {
    return Status::InvalidArgument("not a PEM public key (\"-----BEGIN PUBLIC KEY-----\"): " +
                                   OpenSslError());
  }
  if (EVP_PKEY_get_id(pkey.get()) != EVP_PKEY_ED25519) {
    return Status::InvalidArgument(std::string("PEM public key is ") +
                                   OBJ_nid2sn(EVP_PKEY_get_id(pkey.get())) + ", not Ed25519");
  }
  PublicKey key;
  size_t len = key.raw_.size();
  if (EVP_PKEY_get_raw_public_key(pkey.get(), key.raw_.data(), &len) != 1 || len != kKeyBytes) {
    return Status::Internal("cannot extract the Ed25519 public key: " + OpenSslError());
  }
  return key;
}

Result<PublicKey> PublicKey::LoadPem(const std::string& path) {
  struct stat st {};
  TRUSTMOE_ASSIGN_OR_RETURN(int fd, OpenRegular(path, &st));
  Result<std::string> text = ReadSmallFile(fd, path);
  ::close(fd);
  if (!text.ok()) return text.status();
  Result<PublicKey> key = FromPem(*text);
  if (!key.ok()) return key.status().WithContext(path);
  return key;
}

std::string PublicKey::Hex() const { return ToHex(raw_); }

std::string PublicKey::ToPem() const {
  PkeyPtr pkey = RawPublic(raw_);
  BioPtr bio(BIO_new(BIO_s_mem()));
  // Only allocation failure can make these fail: out of memory is not recoverable.
  TRUSTMOE_CHECK(pkey != nullptr && bio != nullptr);
  TRUSTMOE_CHECK(PEM_write_bio_PUBKEY(bio.get(), pkey.get()) == 1);
  return internal::BioContents(bio.get());
}

bool PublicKey::Verify(ByteSpan message, const Signature& sig) const {
  // The all-zero key is a small-order point: reject outright rather than rely on the library.
  if (std::all_of(raw_.begin(), raw_.end(), [](uint8_t b) { return b == 0; })) return false;
  PkeyPtr pkey = RawPublic(raw_);
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!pkey || !ctx) {
    ERR_clear_error();
    return false;
  }
  bool ok =
      EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) == 1 &&
      EVP_DigestVerify(ctx.get(), sig.data(), sig.size(), MessagePtr(message), message.size()) == 1;
  if (!ok) ERR_clear_error();
  return ok;
}

bool PublicKey::Verify(ByteSpan message, ByteSpan sig) const {
  Signature fixed{};
  if (sig.size() != fixed.size()) return false;
  std::copy(sig.begin(), sig.end(), fixed.begin());
  return Verify(message, fixed);
}

// ---- PrivateKey ----

PrivateKey::~PrivateKey() { OPENSSL_cleanse(seed_.data(), seed_.size()); }

Result<PrivateKey> PrivateKey::Generate() {
  std::array<uint8_t, 32> seed{};
  if (RAND_priv_bytes(seed.data(), static_cast<int>(seed.size())) != 1) {
    return Status::Internal("RAND_priv_bytes failed: " + OpenSslError());
  }
  Result<PrivateKey> key = FromSeed(seed);
  OPENSSL_cleanse(seed.data(), seed.size());
  return key;
}

Result<PrivateKey> PrivateKey::FromSeed(ByteSpan seed) {
  if (seed.size() != kKeyBytes) {
    return Status::InvalidArgument("Ed25519 seed must be 32 bytes, got " +
                                   std::to_string(seed.size()));
  }
  PrivateKey key;
  std::copy(seed.begin(), seed.end(), key.seed_.begin());
  PkeyPtr pkey = RawPrivate(key.seed_);
  if (!pkey) return Status::Internal("cannot build an Ed25519 key: " + OpenSslError());
  std::array<uint8_t, 32> pub{};
  size_t len = pub.size();
  if (EVP_PKEY_get_raw_public_key(pkey.get(), pub.data(), &len) != 1 || len != kKeyBytes) {
    return Status::Internal("cannot derive the Ed25519 public key: " + OpenSslError());
  }
  TRUSTMOE_ASSIGN_OR_RETURN(key.public_key_, PublicKey::FromBytes(pub));
  return key;
}

Result<PrivateKey> PrivateKey::FromPem(std::string_view pem) {
  if (pem.size() > internal::kPemBytesMax) {
    return Status::InvalidArgument("private key PEM is larger than " +
                                   std::to_string(internal::kPemBytesMax) + " bytes");
  }
  BioPtr bio = internal::MemBio(pem);
  if (!bio) return Status::Internal("BIO_new_mem_buf failed: " + OpenSslError());
  PkeyPtr pkey(PEM_read_bio_PrivateKey(bio.get(), nullptr, internal::NoPassword, nullptr));
  if (!pkey) {
    return Status::InvalidArgument(
        "not an unencrypted PEM private key (\"-----BEGIN PRIVATE KEY-----\"): " + OpenSslError());
  }
  if (EVP_PKEY_get_id(pkey.get()) != EVP_PKEY_ED25519) {
    return Status::InvalidArgument(std::string("PEM private key is ") +
                                   OBJ_nid2sn(EVP_PKEY_get_id(pkey.get())) + ", not Ed25519");
  }
  std::array<uint8_t, 32> seed{};
  size_t len = seed.size();
  if (EVP_PKEY_get_raw_private_key(pkey.get(), seed.data(), &len) != 1 || len != kKeyBytes) {
    OPENSSL_cleanse(seed.data(), seed.size());
    return Status::Internal("cannot extract the Ed25519 private key: " + OpenSslError());
  }
  Result<PrivateKey> key = FromSeed(seed);
  OPENSSL_cleanse(seed.data(), seed.size());
  return key;
}

Result<PrivateKey> PrivateKey::LoadPem(const std::string& path) {
  struct stat st {};
  TRUSTMOE_ASSIGN_OR_RETURN(int fd, OpenRegular(path, &st));
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    return Status::PermissionDenied(
        "private key file " + path + " has mode " + OctalMode(st.st_mode) +
        ", which lets group or others access it; run: chmod 600 " + path);
  }
  Result<std::string> text = ReadSmallFile(fd, path);
  ::close(fd);
  if (!text.ok()) return text.status();
  Result<PrivateKey> key = FromPem(*text);
  Wipe(&*text);
  if (!key.ok()) return key.status().WithContext(path);
  return key;
}

std::string PrivateKey::ToPem() const {
  PkeyPtr pkey = RawPrivate(seed_);
  // A secure-heap memory BIO: its buffer is cleansed when freed.
  BioPtr bio(BIO_new(BIO_s_secmem()));
  TRUSTMOE_CHECK(pkey != nullptr && bio != nullptr);
  // PKCS#8, unencrypted: the file mode protects it.
  TRUSTMOE_CHECK(
      PEM_write_bio_PrivateKey(bio.get(), pkey.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1);
  return internal::BioContents(bio.get());
}

Status PrivateKey::SavePem(const std::string& path, bool overwrite) const {
  std::string pem = ToPem();
  Status s = WritePrivateFileAtomic(path, pem, overwrite);
  Wipe(&pem);
  return s;
}

Signature PrivateKey::Sign(ByteSpan message) const {
  PkeyPtr pkey = RawPrivate(seed_);
  MdCtxPtr ctx(EVP_MD_CTX_new());
  // Ed25519 signing of a valid key cannot fail short of memory exhaustion.
  TRUSTMOE_CHECK(pkey != nullptr && ctx != nullptr);
  TRUSTMOE_CHECK(EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) == 1);
  Signature sig{};
  size_t len = sig.size();
  TRUSTMOE_CHECK(EVP_DigestSign(ctx.get(), sig.data(), &len, MessagePtr(message), message.size()) ==
                 1);
  TRUSTMOE_CHECK(len == sig.size());
  return sig;
}

}  // namespace trustmoe::crypto
