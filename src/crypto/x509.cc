#include "crypto/x509.h"

#include <arpa/inet.h>

#include <array>
#include <memory>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "crypto/openssl_util.h"

namespace trustmoe::crypto {

using internal::BioPtr;
using internal::OpenSslDeleter;
using internal::OpenSslError;
using internal::PkeyPtr;
using internal::X509Ptr;

namespace {

using BnPtr = std::unique_ptr<BIGNUM, OpenSslDeleter<BN_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, OpenSslDeleter<X509_EXTENSION_free>>;
using GeneralNamePtr = std::unique_ptr<GENERAL_NAME, OpenSslDeleter<GENERAL_NAME_free>>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, OpenSslDeleter<GENERAL_NAMES_free>>;
using OctetStringPtr = std::unique_ptr<ASN1_OCTET_STRING, OpenSslDeleter<ASN1_OCTET_STRING_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, OpenSslDeleter<X509_STORE_CTX_free>>;
using StorePtr = std::unique_ptr<X509_STORE, OpenSslDeleter<X509_STORE_free>>;

constexpr size_t kCommonNameBytesMax = 64;  // ub-common-name, RFC 5280
constexpr size_t kDnsNameBytesMax = 253;
constexpr int kDaysMax = 36500;
constexpr long kBackdateSeconds = 5 * 60;

Status OpenSslFailure(const std::string& what) {
  return Status::Internal(what + " failed: " + OpenSslError());
}

bool IsDnsChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '*' || c == '_';
}

Status CheckOptions(const CertOptions& opts) {
  if (opts.common_name.empty() || opts.common_name.size() > kCommonNameBytesMax) {
    return Status::InvalidArgument("certificate common name must be 1 to " +
                                   std::to_string(kCommonNameBytesMax) + " bytes, got " +
                                   std::to_string(opts.common_name.size()));
  }
  if (opts.days < 1 || opts.days > kDaysMax) {
    return Status::InvalidArgument("certificate validity must be 1 to " + std::to_string(kDaysMax) +
                                   " days, got " + std::to_string(opts.days));
  }
  for (const std::string& dns : opts.dns_names) {
    bool ok = !dns.empty() && dns.size() <= kDnsNameBytesMax;
    for (char c : dns) ok = ok && IsDnsChar(c);
    if (!ok)
      return Status::InvalidArgument("not a valid DNS name for a certificate: \"" + dns + "\"");
  }
  return Status::Ok();
}

Result<PkeyPtr> NewP256Key() {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return OpenSslFailure("P-256 key generation");
  return key;
}

Result<std::string> KeyPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_secmem()));
  if (!bio) return OpenSslFailure("BIO_new");
  // PKCS#8, unencrypted: the file mode protects it.
  if (PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OpenSslFailure("PEM_write_bio_PrivateKey");
  }
  return internal::BioContents(bio.get());
}

Result<std::string> CertPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio) return OpenSslFailure("BIO_new");
  if (PEM_write_bio_X509(bio.get(), cert) != 1) return OpenSslFailure("PEM_write_bio_X509");
  return internal::BioContents(bio.get());
}

Result<X509Ptr> ParseCert(const std::string& pem, const std::string& what) {
  if (pem.size() > internal::kPemBytesMax) {
    return Status::InvalidArgument(what + " PEM is larger than " +
                                   std::to_string(internal::kPemBytesMax) + " bytes");
  }
  BioPtr bio = internal::MemBio(pem);
  if (!bio) return OpenSslFailure("BIO_new_mem_buf");
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, internal::NoPassword, nullptr));
  if (!cert) {
    return Status::InvalidArgument(what + " is not a PEM certificate: " + OpenSslError());
  }
  return cert;
}

Result<PkeyPtr> ParseKey(const std::string& pem, const std::string& what) {
  if (pem.size() > internal::kPemBytesMax) {
    return Status::InvalidArgument(what + " PEM is larger than " +
                                   std::to_string(internal::kPemBytesMax) + " bytes");
  }
  BioPtr bio = internal::MemBio(pem);
  if (!bio) return OpenSslFailure("BIO_new_mem_buf");
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, internal::NoPassword, nullptr));
  if (!key) {
    return Status::InvalidArgument(what +
                                   " is not an unencrypted PEM private key: " + OpenSslError());
  }
  return key;
}

// A new v3 certificate with a random positive 128-bit serial, validity, subject CN and key.
Result<X509Ptr> NewCert(const CertOptions& opts, EVP_PKEY* key) {
  X509Ptr cert(X509_new());
  if (!cert) return OpenSslFailure("X509_new");
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1) return OpenSslFailure("X509_set_version");
  BnPtr serial(BN_new());
  if (!serial) return OpenSslFailure("BN_new");
  do {
    if (BN_rand(serial.get(), 128, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1) {
      return OpenSslFailure("BN_rand");
    }
  } while (BN_is_zero(serial.get()));
  if (BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr) {
    return OpenSslFailure("BN_to_ASN1_INTEGER");
  }
  if (X509_gmtime_adj(X509_getm_notBefore(cert.get()), -kBackdateSeconds) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400L * opts.days) == nullptr) {
    return OpenSslFailure("setting the validity period");
  }
  X509_NAME* subject = X509_get_subject_name(cert.get());
  const auto* cn = reinterpret_cast<const unsigned char*>(opts.common_name.c_str());
  if (X509_NAME_add_entry_by_NID(subject, NID_commonName, MBSTRING_UTF8, cn,
                                 static_cast<int>(opts.common_name.size()), -1, 0) != 1) {
    return Status::InvalidArgument("cannot use \"" + opts.common_name +
                                   "\" as a common name: " + OpenSslError());
  }
  if (X509_set_pubkey(cert.get(), key) != 1) return OpenSslFailure("X509_set_pubkey");
  return cert;
}

// Adds an extension written in OpenSSL's configuration syntax (e.g. "critical,CA:TRUE").
Status AddExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  ExtPtr ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value));
  if (!ext) return OpenSslFailure(std::string("building extension ") + OBJ_nid2sn(nid));
  if (X509_add_ext(cert, ext.get(), -1) != 1) return OpenSslFailure("X509_add_ext");
  return Status::Ok();
}

// Parses an IPv4 or IPv6 address strictly (inet_pton) into its 4 or 16 raw bytes.
Result<OctetStringPtr> IpOctets(const std::string& text) {
  std::array<unsigned char, 16> raw{};
  int len = 0;
  if (::inet_pton(AF_INET, text.c_str(), raw.data()) == 1) {
    len = 4;
  } else if (::inet_pton(AF_INET6, text.c_str(), raw.data()) == 1) {
    len = 16;
  } else {
    return Status::InvalidArgument("not an IPv4 or IPv6 address: \"" + text + "\"");
  }
  OctetStringPtr octets(ASN1_OCTET_STRING_new());
  if (!octets || ASN1_OCTET_STRING_set(octets.get(), raw.data(), len) != 1) {
    return OpenSslFailure("ASN1_OCTET_STRING_set");
  }
  return octets;
}

Status PushName(GENERAL_NAMES* names, int type, ASN1_STRING* value) {
  GeneralNamePtr name(GENERAL_NAME_new());
  if (!name) {
    ASN1_STRING_free(value);
    return OpenSslFailure("GENERAL_NAME_new");
  }
  GENERAL_NAME_set0_value(name.get(), type, value);  // takes `value`
  if (sk_GENERAL_NAME_push(names, name.get()) <= 0) return OpenSslFailure("sk_GENERAL_NAME_push");
  name.release();  // owned by `names`
  return Status::Ok();
}

Status AddSubjectAltNames(X509* cert, const CertOptions& opts) {
  if (opts.dns_names.empty() && opts.ip_addresses.empty()) return Status::Ok();
  GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
  if (!names) return OpenSslFailure("sk_GENERAL_NAME_new_null");
  for (const std::string& dns : opts.dns_names) {
    ASN1_IA5STRING* ia5 = ASN1_IA5STRING_new();
    if (ia5 == nullptr || ASN1_STRING_set(ia5, dns.data(), static_cast<int>(dns.size())) != 1) {
      ASN1_IA5STRING_free(ia5);
      return OpenSslFailure("ASN1_STRING_set");
    }
    TRUSTMOE_RETURN_IF_ERROR(PushName(names.get(), GEN_DNS, ia5));
  }
  for (const std::string& ip : opts.ip_addresses) {
    TRUSTMOE_ASSIGN_OR_RETURN(OctetStringPtr octets, IpOctets(ip));
    TRUSTMOE_RETURN_IF_ERROR(PushName(names.get(), GEN_IPADD, octets.release()));
  }
  if (X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) != 1) {
    return OpenSslFailure("adding subjectAltName");
  }
  return Status::Ok();
}

Result<CertAndKey> SignAndEncode(X509* cert, EVP_PKEY* signer, EVP_PKEY* subject_key) {
  if (X509_sign(cert, signer, EVP_sha256()) <= 0) return OpenSslFailure("X509_sign");
  CertAndKey out;
  TRUSTMOE_ASSIGN_OR_RETURN(out.cert_pem, CertPem(cert));
  TRUSTMOE_ASSIGN_OR_RETURN(out.key_pem, KeyPem(subject_key));
  return out;
}

}  // namespace

Result<CertAndKey> IssueCa(const CertOptions& opts) {
  TRUSTMOE_RETURN_IF_ERROR(CheckOptions(opts));
  if (!opts.dns_names.empty() || !opts.ip_addresses.empty()) {
    return Status::InvalidArgument("a CA certificate takes no DNS names or IP addresses");
  }
  TRUSTMOE_ASSIGN_OR_RETURN(PkeyPtr key, NewP256Key());
  TRUSTMOE_ASSIGN_OR_RETURN(X509Ptr cert, NewCert(opts, key.get()));
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get())) != 1) {
    return OpenSslFailure("X509_set_issuer_name");
  }
  TRUSTMOE_RETURN_IF_ERROR(
      AddExt(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE"));
  TRUSTMOE_RETURN_IF_ERROR(
      AddExt(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign"));
  TRUSTMOE_RETURN_IF_ERROR(AddExt(cert.get(), cert.get(), NID_subject_key_identifier, "hash"));
  return SignAndEncode(cert.get(), key.get(), key.get());
}

Result<CertAndKey> IssueNodeCert(const std::string& ca_cert_pem, const std::string& ca_key_pem,
                                 const CertOptions& opts) {
  TRUSTMOE_RETURN_IF_ERROR(CheckOptions(opts));
  TRUSTMOE_ASSIGN_OR_RETURN(X509Ptr ca, ParseCert(ca_cert_pem, "CA certificate"));
  TRUSTMOE_ASSIGN_OR_RETURN(PkeyPtr ca_key, ParseKey(ca_key_pem, "CA key"));
  if (X509_check_ca(ca.get()) == 0) {
    return Status::InvalidArgument("the CA certificate is not a CA (no basicConstraints CA:TRUE)");
  }
  if (X509_check_private_key(ca.get(), ca_key.get()) != 1) {
    ERR_clear_error();
    return Status::InvalidArgument("the CA key does not match the CA certificate");
  }
  TRUSTMOE_ASSIGN_OR_RETURN(PkeyPtr key, NewP256Key());
  TRUSTMOE_ASSIGN_OR_RETURN(X509Ptr cert, NewCert(opts, key.get()));
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(ca.get())) != 1) {
    return OpenSslFailure("X509_set_issuer_name");
  }
  X509* c = cert.get();
  TRUSTMOE_RETURN_IF_ERROR(AddExt(c, ca.get(), NID_basic_constraints, "critical,CA:FALSE"));
  TRUSTMOE_RETURN_IF_ERROR(AddExt(c, ca.get(), NID_key_usage, "critical,digitalSignature"));
  TRUSTMOE_RETURN_IF_ERROR(AddExt(c, ca.get(), NID_ext_key_usage, "serverAuth,clientAuth"));
  TRUSTMOE_RETURN_IF_ERROR(AddExt(c, ca.get(), NID_subject_key_identifier, "hash"));
  TRUSTMOE_RETURN_IF_ERROR(AddExt(c, ca.get(), NID_authority_key_identifier, "keyid,issuer"));
  TRUSTMOE_RETURN_IF_ERROR(AddSubjectAltNames(c, opts));
  return SignAndEncode(c, ca_key.get(), key.get());
}

Result<std::string> CertCommonName(const std::string& cert_pem) {
  TRUSTMOE_ASSIGN_OR_RETURN(X509Ptr cert, ParseCert(cert_pem, "certificate"));
  X509_NAME* subject = X509_get_subject_name(cert.get());
  int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index < 0) return Status::InvalidArgument("certificate subject has no common name");
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
  unsigned char* utf8 = nullptr;
  int len = ASN1_STRING_to_UTF8(&utf8, data);
  if (len < 0) {
    return Status::InvalidArgument("certificate common name is not valid text: " + OpenSslError());
  }
  std::string out(reinterpret_cast<char*>(utf8), static_cast<size_t>(len));
  OPENSSL_free(utf8);
  return out;
}

Status VerifyCertSignedBy(const std::string& cert_pem, const std::string& ca_cert_pem) {
  TRUSTMOE_ASSIGN_OR_RETURN(X509Ptr cert, ParseCert(cert_pem, "certificate"));
  TRUSTMOE_ASSIGN_OR_RETURN(X509Ptr ca, ParseCert(ca_cert_pem, "CA certificate"));
  StorePtr store(X509_STORE_new());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!store || !ctx) return OpenSslFailure("X509_STORE_new");
  if (X509_STORE_add_cert(store.get(), ca.get()) != 1) return OpenSslFailure("X509_STORE_add_cert");
  if (X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr) != 1) {
    return OpenSslFailure("X509_STORE_CTX_init");
  }
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    return Status::Unauthenticated(std::string("certificate does not verify against the CA: ") +
                                   X509_verify_cert_error_string(err));
  }
  return Status::Ok();
}

}  // namespace trustmoe::crypto
