// Private to src/crypto: owning pointers for OpenSSL objects and error text. Not for use outside
// this module (OpenSSL appears only in src/crypto).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common/status.h"

namespace trustmoe::crypto::internal {

template <auto Free>
struct OpenSslDeleter {
  template <typename T>
  void operator()(T* p) const {
    Free(p);
  }
};

using BioPtr = std::unique_ptr<BIO, OpenSslDeleter<BIO_free_all>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, OpenSslDeleter<EVP_PKEY_free>>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, OpenSslDeleter<EVP_PKEY_CTX_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, OpenSslDeleter<EVP_MD_CTX_free>>;
using X509Ptr = std::unique_ptr<X509, OpenSslDeleter<X509_free>>;

// Drains OpenSSL's thread-local error queue and returns its entries as text ("error:...; ..."),
// or "no OpenSSL error detail" when it is empty. Call after every failed OpenSSL call so that a
// stale error never shows up in an unrelated message.
inline std::string OpenSslError() {
  std::string out;
  unsigned long code = 0;
  while ((code = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? std::string("no OpenSSL error detail") : out;
}

// A read-only memory BIO over `text` (which must outlive it).
inline BioPtr MemBio(std::string_view text) {
  return BioPtr(BIO_new_mem_buf(text.empty() ? "" : text.data(), static_cast<int>(text.size())));
}

// Contents of a memory BIO.
inline std::string BioContents(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  if (len <= 0 || data == nullptr) return std::string();
  return std::string(data, static_cast<size_t>(len));
}

// PEM password callback that refuses: an encrypted PEM fails to load instead of prompting on the
// terminal.
inline int NoPassword(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*u*/) { return -1; }

// PEM inputs larger than this are refused before parsing (hostile input).
inline constexpr size_t kPemBytesMax = 64 * 1024;

}  // namespace trustmoe::crypto::internal
