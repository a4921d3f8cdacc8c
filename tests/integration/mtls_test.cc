// trustmoe-store with [tls] mode = "mtls": clients with a certificate from the cluster CA get
// in; clients with a certificate from another CA, without one, or in plaintext do not.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "crypto/cid.h"
#include "crypto/x509.h"
#include "storage/store_client.h"
#include "tests/storage/store_process.h"

namespace trustmoe::storage {
namespace {

using ::testing::HasSubstr;
using testing::StoreProcess;
using testing::TempDir;

constexpr uint64_t kMiB = 1 << 20;

class MutualTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = crypto::IssueCa({.common_name = "TrustMoE test CA"});
    auto other_ca = crypto::IssueCa({.common_name = "Some other CA"});
    ASSERT_TRUE(ca.ok()) << ca.status().ToString();
    ASSERT_TRUE(other_ca.ok()) << other_ca.status().ToString();
    auto server = crypto::IssueNodeCert(ca->cert_pem, ca->key_pem,
                                        {.common_name = "store1", .ip_addresses = {"127.0.0.1"}});
    auto client = crypto::IssueNodeCert(ca->cert_pem, ca->key_pem, {.common_name = "edge1"});
    auto outsider = crypto::IssueNodeCert(other_ca->cert_pem, other_ca->key_pem,
                                          {.common_name = "edge1", .ip_addresses = {"127.0.0.1"}});
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    ASSERT_TRUE(outsider.ok()) << outsider.status().ToString();
    Write("ca.crt", ca->cert_pem, 0644);
    Write("other-ca.crt", other_ca->cert_pem, 0644);
    Write("store1.crt", server->cert_pem, 0644);
    Write("store1.key", server->key_pem, 0600);
    Write("edge1.crt", client->cert_pem, 0644);
    Write("edge1.key", client->key_pem, 0600);
    Write("outsider.crt", outsider->cert_pem, 0644);
    Write("outsider.key", outsider->key_pem, 0600);

    testing::StoreProcessOptions options;
    options.tls = {.mode = "mtls",
                   .cert = tls_.Sub("store1.crt"),
                   .key = tls_.Sub("store1.key"),
                   .ca = tls_.Sub("ca.crt")};
    store_ = StoreProcess::Start(options);
    ASSERT_NE(store_, nullptr);
  }

  void Write(const std::string& name, const std::string& pem, uint32_t mode) {
    testing::WriteFileOrDie(tls_.Sub(name), pem, mode);
  }

  // A client of the store with `mode` and the named files ("" for none).
  std::unique_ptr<StoreClient> Client(net::TlsMode mode, const std::string& cert,
                                      const std::string& ca) {
    StoreClientOptions options =
        testing::ClientOptions({store_->endpoint()}, store_->writer(), /*rounds_max=*/1);
    options.transport.mode = mode;
    options.rpc_timeout_ms = 10'000;
    if (!cert.empty()) {
      options.transport.cert_file = tls_.Sub(cert + ".crt");
      options.transport.key_file = tls_.Sub(cert + ".key");
    }
    if (!ca.empty()) options.transport.ca_file = tls_.Sub(ca);
    auto client = StoreClient::Create(std::move(options));
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    return client.ok() ? std::move(client).value() : nullptr;
  }

  // The blobs the store lists, asked by a client that is let in.
  size_t StoredCount() {
    auto client = Client(net::TlsMode::kMutualTls, "edge1", "ca.crt");
    auto page = client->List("", 0, false);
    EXPECT_TRUE(page.ok()) << page.status().ToString();
    return page.ok() ? page->blobs.size() : 0;
  }

  TempDir tls_;
  std::unique_ptr<StoreProcess> store_;
};

TEST_F(MutualTlsTest, ClientWithACertificateFromTheClusterCaPutsAndGets) {
  auto client = Client(net::TlsMode::kMutualTls, "edge1", "ca.crt");
  ASSERT_NE(client, nullptr);
  const Bytes data = testing::RandomBytes(2 * kMiB + 9, 1);
  auto put = client->Put(data);
  ASSERT_TRUE(put.ok()) << put.status().ToString() << "\n" << store_->Log();
  EXPECT_EQ(put->cid, crypto::ComputeCid(data));
  auto got = client->Get(put->cid);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == data);
  auto stat = client->Stat(put->cid);
  ASSERT_TRUE(stat.ok()) << stat.status().ToString();
  EXPECT_EQ(stat->size, data.size());
}

TEST_F(MutualTlsTest, ClientWithACertificateFromAnotherCaIsRefused) {
  auto outsider = Client(net::TlsMode::kMutualTls, "outsider", "ca.crt");
  ASSERT_NE(outsider, nullptr);
  const Bytes data = testing::RandomBytes(kMiB + 1, 2);
  auto put = outsider->Put(data);
  ASSERT_FALSE(put.ok()) << "a client certificate from another CA was accepted";
  EXPECT_EQ(put.status().code(), StatusCode::kUnavailable) << put.status().ToString();
  auto stat = outsider->Stat(crypto::ComputeCid(data));
  EXPECT_EQ(stat.status().code(), StatusCode::kUnavailable) << stat.status().ToString();
  EXPECT_EQ(StoredCount(), 0u);
}

TEST_F(MutualTlsTest, ClientWithoutACertificateIsRefused) {
  auto no_cert = Client(net::TlsMode::kTls, "", "ca.crt");
  ASSERT_NE(no_cert, nullptr);
  auto put = no_cert->Put(testing::RandomBytes(1000, 3));
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.status().code(), StatusCode::kUnavailable) << put.status().ToString();
  EXPECT_EQ(StoredCount(), 0u);
}

TEST_F(MutualTlsTest, ClientThatDoesNotTrustTheStoreRefusesIt) {
  // A valid client certificate, but the store's certificate is checked against another CA.
  auto client = Client(net::TlsMode::kMutualTls, "edge1", "other-ca.crt");
  ASSERT_NE(client, nullptr);
  auto put = client->Put(testing::RandomBytes(1000, 4));
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.status().code(), StatusCode::kUnavailable) << put.status().ToString();
  EXPECT_EQ(StoredCount(), 0u);
}

TEST_F(MutualTlsTest, PlaintextClientIsRefused) {
  auto plaintext = Client(net::TlsMode::kPlaintext, "", "");
  ASSERT_NE(plaintext, nullptr);
  auto put = plaintext->Put(testing::RandomBytes(1000, 5));
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.status().code(), StatusCode::kUnavailable) << put.status().ToString();
  auto list = plaintext->List("", 0, false);
  EXPECT_FALSE(list.ok());
  EXPECT_EQ(StoredCount(), 0u);
}

TEST_F(MutualTlsTest, CliOverMutualTls) {
  const std::string file = tls_.Sub("blob.bin");
  const Bytes data = testing::RandomBytes(3000, 6);
  testing::WriteFileOrDie(file, data);
  std::vector<std::string> base = {testing::CliBinary(),
                                   "store",
                                   "--store",
                                   store_->endpoint(),
                                   "--tls-mode",
                                   "mtls",
                                   "--tls-ca",
                                   tls_.Sub("ca.crt"),
                                   "--tls-cert",
                                   tls_.Sub("edge1.crt"),
                                   "--tls-key",
                                   tls_.Sub("edge1.key"),
                                   "--key",
                                   store_->writer_key_path()};
  std::vector<std::string> put = base;
  put.insert(put.end(), {"put", file});
  testing::ProcessResult r = testing::RunProcess(put, tls_.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, crypto::ComputeCid(data).ToString() + "\n");

  std::vector<std::string> plain = {
      testing::CliBinary(), "store", "--store",
      store_->endpoint(),   "stat",  crypto::ComputeCid(data).ToString()};
  r = testing::RunProcess(plain, tls_.path());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("UNAVAILABLE"));
}

}  // namespace
}  // namespace trustmoe::storage
