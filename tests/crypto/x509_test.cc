#include "crypto/x509.h"

#include <string>

#include <gtest/gtest.h>

namespace trustmoe::crypto {
namespace {

CertAndKey MustIssueCa(const std::string& cn) {
  Result<CertAndKey> ca = IssueCa(CertOptions{.common_name = cn, .days = 30});
  EXPECT_TRUE(ca.ok()) << ca.status().ToString();
  return ca.ok() ? *ca : CertAndKey{};
}

CertOptions NodeOptions() {
  return CertOptions{.common_name = "validator-0",
                     .dns_names = {"validator-0.local", "localhost"},
                     .ip_addresses = {"127.0.0.1", "::1"},
                     .days = 30};
}

TEST(X509Test, IssueCaAndNodeCert) {
  CertAndKey ca = MustIssueCa("TrustMoE test CA");
  EXPECT_NE(ca.cert_pem.find("-----BEGIN CERTIFICATE-----"), std::string::npos);
  EXPECT_NE(ca.key_pem.find("-----BEGIN PRIVATE KEY-----"), std::string::npos);
  EXPECT_EQ(*CertCommonName(ca.cert_pem), "TrustMoE test CA");
  Status self = VerifyCertSignedBy(ca.cert_pem, ca.cert_pem);
  EXPECT_TRUE(self.ok()) << self.ToString();

  Result<CertAndKey> node = IssueNodeCert(ca.cert_pem, ca.key_pem, NodeOptions());
  ASSERT_TRUE(node.ok()) << node.status().ToString();
  EXPECT_NE(node->key_pem.find("-----BEGIN PRIVATE KEY-----"), std::string::npos);
  EXPECT_EQ(*CertCommonName(node->cert_pem), "validator-0");
  Status verified = VerifyCertSignedBy(node->cert_pem, ca.cert_pem);
  EXPECT_TRUE(verified.ok()) << verified.ToString();
}

TEST(X509Test, NodeCertFailsAgainstAnotherCa) {
  CertAndKey ca = MustIssueCa("CA one");
  CertAndKey other = MustIssueCa("CA two");
  Result<CertAndKey> node = IssueNodeCert(ca.cert_pem, ca.key_pem, NodeOptions());
  ASSERT_TRUE(node.ok()) << node.status().ToString();
  Status s = VerifyCertSignedBy(node->cert_pem, other.cert_pem);
  EXPECT_EQ(s.code(), StatusCode::kUnauthenticated) << s.ToString();
  // Same subject name, different key: still refused.
  CertAndKey twin = MustIssueCa("CA one");
  s = VerifyCertSignedBy(node->cert_pem, twin.cert_pem);
  EXPECT_EQ(s.code(), StatusCode::kUnauthenticated) << s.ToString();
}

TEST(X509Test, NodeCertCannotSignOtherCerts) {
  CertAndKey ca = MustIssueCa("CA");
  Result<CertAndKey> node = IssueNodeCert(ca.cert_pem, ca.key_pem, NodeOptions());
  ASSERT_TRUE(node.ok());
  Result<CertAndKey> grandchild = IssueNodeCert(node->cert_pem, node->key_pem, NodeOptions());
  EXPECT_EQ(grandchild.status().code(), StatusCode::kInvalidArgument);
}

TEST(X509Test, MismatchedCaKeyFails) {
  CertAndKey ca = MustIssueCa("CA one");
  CertAndKey other = MustIssueCa("CA two");
  Result<CertAndKey> node = IssueNodeCert(ca.cert_pem, other.key_pem, NodeOptions());
  ASSERT_FALSE(node.ok());
  EXPECT_EQ(node.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(node.status().message().find("does not match"), std::string::npos)
      << node.status().ToString();
}

TEST(X509Test, BadInputsAreInvalidArgument) {
  CertAndKey ca = MustIssueCa("CA");
  EXPECT_EQ(IssueNodeCert("garbage", ca.key_pem, NodeOptions()).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(IssueNodeCert(ca.cert_pem, "garbage", NodeOptions()).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(IssueNodeCert(ca.key_pem, ca.cert_pem, NodeOptions()).status().code(),
            StatusCode::kInvalidArgument);

  CertOptions bad_ip = NodeOptions();
  bad_ip.ip_addresses = {"1.2.3.4x"};
  Result<CertAndKey> r = IssueNodeCert(ca.cert_pem, ca.key_pem, bad_ip);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("1.2.3.4x"), std::string::npos) << r.status().ToString();
  bad_ip.ip_addresses = {"256.1.1.1"};
  EXPECT_EQ(IssueNodeCert(ca.cert_pem, ca.key_pem, bad_ip).status().code(),
            StatusCode::kInvalidArgument);

  CertOptions bad_dns = NodeOptions();
  bad_dns.dns_names = {"a b"};
  EXPECT_EQ(IssueNodeCert(ca.cert_pem, ca.key_pem, bad_dns).status().code(),
            StatusCode::kInvalidArgument);
  bad_dns.dns_names = {""};
  EXPECT_EQ(IssueNodeCert(ca.cert_pem, ca.key_pem, bad_dns).status().code(),
            StatusCode::kInvalidArgument);

  EXPECT_EQ(IssueCa(CertOptions{.common_name = ""}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(IssueCa(CertOptions{.common_name = std::string(65, 'a')}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(IssueCa(CertOptions{.common_name = "CA", .days = 0}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(CertCommonName("garbage").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(VerifyCertSignedBy("garbage", ca.cert_pem).code(), StatusCode::kInvalidArgument);
}

TEST(X509Test, NodeCertWithoutAltNames) {
  CertAndKey ca = MustIssueCa("CA");
  Result<CertAndKey> node =
      IssueNodeCert(ca.cert_pem, ca.key_pem, CertOptions{.common_name = "client"});
  ASSERT_TRUE(node.ok()) << node.status().ToString();
  EXPECT_TRUE(VerifyCertSignedBy(node->cert_pem, ca.cert_pem).ok());
}

TEST(X509Test, Utf8CommonName) {
  CertAndKey ca = MustIssueCa("Zürich CA");
  EXPECT_EQ(*CertCommonName(ca.cert_pem), "Zürich CA");
}

TEST(X509Test, SerialsDiffer) {
  // Two certificates with the same options are different (random serial, new key).
  CertAndKey a = MustIssueCa("CA");
  CertAndKey b = MustIssueCa("CA");
  EXPECT_NE(a.cert_pem, b.cert_pem);
  EXPECT_NE(a.key_pem, b.key_pem);
}

}  // namespace
}  // namespace trustmoe::crypto
