// X.509 certificates for gRPC transport security (TLS and mutual TLS). Used by `trustmoe cert`.
// TLS keys are ECDSA P-256 (what every TLS stack accepts), separate from Ed25519 identity keys.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace trustmoe::crypto {

struct CertAndKey {
  std::string cert_pem;
  std::string key_pem;  // PKCS#8
};

struct CertOptions {
  // Default member initializers let callers name only the fields they set
  // (CertOptions{.common_name = "ca"}) without -Wmissing-field-initializers.
  std::string common_name{};                // 1..64 bytes (the X.509 upper bound)
  std::vector<std::string> dns_names{};     // subjectAltName DNS entries (nodes)
  std::vector<std::string> ip_addresses{};  // subjectAltName IP entries (nodes), v4 or v6 text
  int days = 365;                           // 1..36500
};

// Certificates are valid from 5 minutes before issue (clock skew between machines) to `days`
// after it, carry a random 128-bit serial and are signed with SHA-256.
//
// A self-signed cluster CA: basicConstraints critical CA:TRUE, keyUsage critical keyCertSign and
// cRLSign, subjectKeyIdentifier. InvalidArgument for bad options (a CA takes no DNS names or IP
// addresses).
Result<CertAndKey> IssueCa(const CertOptions& opts);

// A node certificate signed by the CA, usable as TLS server and client: basicConstraints
// CA:FALSE, keyUsage digitalSignature, extendedKeyUsage serverAuth and clientAuth, subjectAltName
// from `dns_names` and `ip_addresses` (omitted when both are empty), subject and authority key
// identifiers. InvalidArgument when the CA PEMs do not parse, the certificate is not a CA, the
// key does not match it, a DNS name or IP does not parse, or other options are bad.
Result<CertAndKey> IssueNodeCert(const std::string& ca_cert_pem, const std::string& ca_key_pem,
                                 const CertOptions& opts);

// Subject common name of a PEM certificate (for `trustmoe cert show` and tests).
// InvalidArgument when the PEM does not parse or the subject has no common name.
Result<std::string> CertCommonName(const std::string& cert_pem);

// OK when `cert_pem` chains to `ca_cert_pem` (X509_verify_cert with the CA as the only trust
// anchor: signature, validity period, CA constraints). InvalidArgument when a PEM does not parse;
// Unauthenticated, with OpenSSL's reason, when verification fails.
Status VerifyCertSignedBy(const std::string& cert_pem, const std::string& ca_cert_pem);

}  // namespace trustmoe::crypto
