#include "crypto/sha256.h"

#include <string>

#include <gtest/gtest.h>

namespace trustmoe::crypto {
namespace {

std::string HexOf(std::string_view message) { return DigestHex(Sha256::Hash(AsBytes(message))); }

// FIPS 180-4 / NIST CSRC example values for SHA-256.
TEST(Sha256Test, NistVectors) {
  EXPECT_EQ(HexOf("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(HexOf(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(HexOf("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(HexOf("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
                  "klmnopqrlmnopqrsmnopqrstnopqrstu"),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  EXPECT_EQ(HexOf(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256Test, MillionAStreamedInOddPieces) {
  Sha256 h;
  std::string piece(997, 'a');
  size_t fed = 0;
  while (fed + piece.size() <= 1000000) {
    h.Update(AsBytes(piece));
    fed += piece.size();
  }
  h.Update(AsBytes(std::string(1000000 - fed, 'a')));
  EXPECT_EQ(DigestHex(h.Final()),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256Test, StreamingEqualsOneShotForEverySplit) {
  std::string message;
  for (int i = 0; i < 300; ++i) message += static_cast<char>(i * 7 + 3);
  Digest expected = Sha256::Hash(AsBytes(message));
  for (size_t piece : {1u, 3u, 7u, 55u, 63u, 64u, 65u, 127u, 299u}) {
    Sha256 h;
    for (size_t pos = 0; pos < message.size(); pos += piece) {
      h.Update(AsBytes(std::string_view(message).substr(pos, piece)));
    }
    EXPECT_EQ(h.Final(), expected) << "piece size " << piece;
  }
}

TEST(Sha256Test, FinalResetsForANewMessage) {
  Sha256 h;
  h.Update(AsBytes("garbage"));
  (void)h.Final();
  h.Update(AsBytes("abc"));
  EXPECT_EQ(h.Final(), Sha256::Hash(AsBytes("abc")));
  EXPECT_EQ(h.Final(), Sha256::Hash({}));  // nothing appended since
}

TEST(Sha256Test, MovedObjectKeepsState) {
  Sha256 a;
  a.Update(AsBytes("ab"));
  Sha256 b(std::move(a));
  b.Update(AsBytes("c"));
  EXPECT_EQ(b.Final(), Sha256::Hash(AsBytes("abc")));
}

TEST(Sha256Test, DigestHexRoundTrip) {
  Digest d = Sha256::Hash(AsBytes("abc"));
  Result<Digest> back = DigestFromHex(DigestHex(d));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, d);
}

TEST(Sha256Test, DigestFromHexRejectsBadInput) {
  std::string good = DigestHex(Sha256::Hash(AsBytes("abc")));
  EXPECT_EQ(DigestFromHex("").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(DigestFromHex(good.substr(2)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(DigestFromHex(good + "00").status().code(), StatusCode::kInvalidArgument);
  std::string bad = good;
  bad[10] = 'g';
  EXPECT_EQ(DigestFromHex(bad).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace trustmoe::crypto
