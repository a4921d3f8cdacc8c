#include "crypto/ed25519.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "crypto/x509.h"

namespace trustmoe::crypto {
namespace {

Bytes Unhex(std::string_view hex) {
  Result<Bytes> b = FromHex(hex);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return b.ok() ? *b : Bytes{};
}

// RFC 8032 section 7.1.
struct Rfc8032Vector {
  const char* name;
  const char* secret_key;
  const char* public_key;
  const char* message;
  const char* signature;
};

constexpr Rfc8032Vector kVectors[] = {
    {"TEST 1", "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e3970"
     "1cf9b46bd25bf5f0595bbe24655141438e7a100b"},
    {"TEST 2", "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613"
     "d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
    {"TEST 3", "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760"
     "984dc6594a7c15e9716ed28dc027beceea1ec40a"},
    {"TEST SHA(abc)", "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
     "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3"
     "feebbd454d4423643ce80e2a9ac94fa54ca49f",
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c6"
     "6431e0303dca179c138ac17ad9bef1177331a704"},
};

TEST(Ed25519Test, Rfc8032Vectors) {
  for (const Rfc8032Vector& v : kVectors) {
    SCOPED_TRACE(v.name);
    Result<PrivateKey> key = PrivateKey::FromSeed(Unhex(v.secret_key));
    ASSERT_TRUE(key.ok()) << key.status().ToString();
    EXPECT_EQ(key->public_key().Hex(), v.public_key);
    Bytes message = Unhex(v.message);
    Signature sig = key->Sign(message);
    EXPECT_EQ(ToHex(sig), v.signature);

    Result<PublicKey> pub = PublicKey::FromHex(v.public_key);
    ASSERT_TRUE(pub.ok()) << pub.status().ToString();
    Bytes expected_sig = Unhex(v.signature);
    EXPECT_TRUE(pub->Verify(message, ByteSpan(expected_sig)));
    EXPECT_TRUE(pub->Verify(message, sig));
  }
}

TEST(Ed25519Test, FlippedBitFailsVerification) {
  for (const Rfc8032Vector& v : kVectors) {
    SCOPED_TRACE(v.name);
    PublicKey pub = *PublicKey::FromHex(v.public_key);
    Bytes message = Unhex(v.message);
    Bytes sig_bytes = Unhex(v.signature);
    Signature sig{};
    std::copy(sig_bytes.begin(), sig_bytes.end(), sig.begin());
    ASSERT_TRUE(pub.Verify(message, sig));

    for (size_t bit : {0u, 7u, 255u, 256u, 511u}) {
      Signature bad = sig;
      bad[bit / 8] ^= static_cast<uint8_t>(1 << (bit % 8));
      EXPECT_FALSE(pub.Verify(message, bad)) << "signature bit " << bit;
    }
    if (!message.empty()) {
      Bytes bad = message;
      bad.back() ^= 1;
      EXPECT_FALSE(pub.Verify(bad, sig));
    }
    Bytes longer = message;
    longer.push_back(0);
    EXPECT_FALSE(pub.Verify(longer, sig));
  }
}

TEST(Ed25519Test, WrongKeyAndWrongLengthSignaturesFail) {
  PrivateKey a = *PrivateKey::Generate();
  PrivateKey b = *PrivateKey::Generate();
  ASSERT_NE(a.public_key(), b.public_key());
  Signature sig = a.Sign(AsBytes("hello"));
  EXPECT_TRUE(a.public_key().Verify(AsBytes("hello"), sig));
  EXPECT_FALSE(b.public_key().Verify(AsBytes("hello"), sig));
  EXPECT_FALSE(a.public_key().Verify(AsBytes("hello"), ByteSpan(sig.data(), 63)));
  Bytes longer(sig.begin(), sig.end());
  longer.push_back(0);
  EXPECT_FALSE(a.public_key().Verify(AsBytes("hello"), ByteSpan(longer)));
  EXPECT_FALSE(PublicKey().Verify(AsBytes("hello"), sig));
}

TEST(Ed25519Test, FromBytesChecksLength) {
  Bytes raw(31, 1);
  Result<PublicKey> short_key = PublicKey::FromBytes(raw);
  EXPECT_EQ(short_key.status().code(), StatusCode::kInvalidArgument);
  raw.resize(33, 1);
  EXPECT_EQ(PublicKey::FromBytes(raw).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(PrivateKey::FromSeed(Bytes(31, 1)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(PublicKey::FromHex("abcd").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(PublicKey::FromHex(std::string(64, 'x')).status().code(), StatusCode::kInvalidArgument);
  PrivateKey key = *PrivateKey::Generate();
  Result<PublicKey> same = PublicKey::FromBytes(key.public_key().bytes());
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(*same, key.public_key());
}

TEST(Ed25519Test, PemRoundTrip) {
  PrivateKey key = *PrivateKey::Generate();
  std::string pem = key.ToPem();
  EXPECT_NE(pem.find("-----BEGIN PRIVATE KEY-----"), std::string::npos);
  Result<PrivateKey> back = PrivateKey::FromPem(pem);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->public_key(), key.public_key());
  EXPECT_EQ(back->Sign(AsBytes("m")), key.Sign(AsBytes("m")));

  std::string pub_pem = key.public_key().ToPem();
  EXPECT_NE(pub_pem.find("-----BEGIN PUBLIC KEY-----"), std::string::npos);
  Result<PublicKey> pub = PublicKey::FromPem(pub_pem);
  ASSERT_TRUE(pub.ok()) << pub.status().ToString();
  EXPECT_EQ(*pub, key.public_key());
}

TEST(Ed25519Test, GarbagePemIsInvalidArgument) {
  for (std::string_view garbage :
       {std::string_view(""), std::string_view("hello"),
        std::string_view("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")}) {
    Result<PrivateKey> key = PrivateKey::FromPem(garbage);
    ASSERT_FALSE(key.ok());
    EXPECT_EQ(key.status().code(), StatusCode::kInvalidArgument) << key.status().ToString();
    EXPECT_NE(key.status().message().find("PEM"), std::string::npos) << key.status().ToString();
    EXPECT_EQ(PublicKey::FromPem(garbage).status().code(), StatusCode::kInvalidArgument);
  }
  // A public key is not a private key and vice versa.
  PrivateKey key = *PrivateKey::Generate();
  EXPECT_EQ(PrivateKey::FromPem(key.public_key().ToPem()).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(PublicKey::FromPem(key.ToPem()).status().code(), StatusCode::kInvalidArgument);
}

TEST(Ed25519Test, NonEd25519PemIsRefused) {
  // A P-256 PKCS#8 key: valid PEM, wrong algorithm.
  Result<CertAndKey> ca = IssueCa(CertOptions{.common_name = "test CA"});
  ASSERT_TRUE(ca.ok()) << ca.status().ToString();
  Result<PrivateKey> key = PrivateKey::FromPem(ca->key_pem);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(key.status().message().find("not Ed25519"), std::string::npos)
      << key.status().ToString();
}

class TempDir {
 public:
  TempDir() {
    std::string templ = ::testing::TempDir() + "crypto_test_XXXXXX";
    path_ = ::mkdtemp(templ.data());
    EXPECT_FALSE(path_.empty());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0);
  return st.st_mode & 07777;
}

TEST(Ed25519Test, SavePemWrites0600AndLoads) {
  TempDir dir;
  std::string path = dir.File("id.pem");
  PrivateKey key = *PrivateKey::Generate();
  Status s = key.SavePem(path);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(ModeOf(path), 0600u);
  Result<PrivateKey> back = PrivateKey::LoadPem(path);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->public_key(), key.public_key());
  // Nothing but the key is left in the directory.
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.File(""))) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

TEST(Ed25519Test, SavePemRefusesToOverwriteUnlessAsked) {
  TempDir dir;
  std::string path = dir.File("id.pem");
  PrivateKey first = *PrivateKey::Generate();
  PrivateKey second = *PrivateKey::Generate();
  ASSERT_TRUE(first.SavePem(path).ok());
  Status s = second.SavePem(path);
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists) << s.ToString();
  EXPECT_EQ(PrivateKey::LoadPem(path)->public_key(), first.public_key());
  ASSERT_TRUE(second.SavePem(path, /*overwrite=*/true).ok());
  EXPECT_EQ(ModeOf(path), 0600u);
  EXPECT_EQ(PrivateKey::LoadPem(path)->public_key(), second.public_key());
}

TEST(Ed25519Test, LoadPemRefusesGroupOrOtherAccess) {
  TempDir dir;
  std::string path = dir.File("id.pem");
  ASSERT_TRUE(PrivateKey::Generate()->SavePem(path).ok());
  for (mode_t mode : {0644, 0640, 0604, 0660, 0601}) {
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    Result<PrivateKey> key = PrivateKey::LoadPem(path);
    ASSERT_FALSE(key.ok());
    EXPECT_EQ(key.status().code(), StatusCode::kPermissionDenied);
    const std::string& msg = key.status().message();
    EXPECT_NE(msg.find("chmod 600 " + path), std::string::npos) << msg;
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
  }
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  EXPECT_NE(PrivateKey::LoadPem(path).status().message().find("0644"), std::string::npos);
  ASSERT_EQ(::chmod(path.c_str(), 0400), 0);
  EXPECT_TRUE(PrivateKey::LoadPem(path).ok());
}

TEST(Ed25519Test, LoadPemErrors) {
  TempDir dir;
  Result<PrivateKey> missing = PrivateKey::LoadPem(dir.File("nope.pem"));
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope.pem"), std::string::npos);
  EXPECT_EQ(PublicKey::LoadPem(dir.File("nope.pem")).status().code(), StatusCode::kNotFound);

  std::string garbage = dir.File("garbage.pem");
  { std::ofstream(garbage) << "not a key\n"; }
  ASSERT_EQ(::chmod(garbage.c_str(), 0600), 0);
  Result<PrivateKey> bad = PrivateKey::LoadPem(garbage);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find(garbage), std::string::npos);

  std::string pub_path = dir.File("id.pub");
  PrivateKey key = *PrivateKey::Generate();
  { std::ofstream(pub_path) << key.public_key().ToPem(); }
  Result<PublicKey> pub = PublicKey::LoadPem(pub_path);
  ASSERT_TRUE(pub.ok()) << pub.status().ToString();
  EXPECT_EQ(*pub, key.public_key());
}

TEST(Ed25519Test, SavePemIntoMissingDirectoryFails) {
  TempDir dir;
  Status s = PrivateKey::Generate()->SavePem(dir.File("no/such/dir/id.pem"));
  EXPECT_EQ(s.code(), StatusCode::kNotFound) << s.ToString();
}

}  // namespace
}  // namespace trustmoe::crypto
