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
  std::string common_name;
  std::vector<std::string> dns_names;     // subjectAltName DNS entries (nodes)
  std::vector<std::string> ip_addresses;  // subjectAltName IP entries (nodes), v4 or v6 text
  int days = 365;
};

// A self-signed cluster CA (basicConstraints CA:TRUE, keyCertSign).
Result<CertAndKey> IssueCa(const CertOptions& opts);

// A node certificate signed by the CA, usable as TLS server and client (serverAuth, clientAuth).
// InvalidArgument when the CA PEMs do not parse or do not match, or an IP does not parse.
Result<CertAndKey> IssueNodeCert(const std::string& ca_cert_pem, const std::string& ca_key_pem,
                                 const CertOptions& opts);

// Subject common name of a PEM certificate (for `trustmoe cert show` and tests).
Result<std::string> CertCommonName(const std::string& cert_pem);

}  // namespace trustmoe::crypto
