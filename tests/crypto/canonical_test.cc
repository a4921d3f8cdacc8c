#include "crypto/canonical.h"

#include <limits>
#include <string>

#include <gtest/gtest.h>

namespace trustmoe::crypto {
namespace {

constexpr std::string_view kDomain = "trustmoe/example/v1";

Digest Elevens() {
  Digest d;
  d.fill(0x11);
  return d;
}

CanonicalWriter Example() {
  CanonicalWriter w(kDomain);
  w.U8(7)
      .U32(0x01020304)
      .U64(0x0102030405060708)
      .I64(-2)
      .Bool(true)
      .Blob(Bytes{0xde, 0xad})
      .Str("hi")
      .Fixed(Elevens());
  return w;
}

// The example of docs/formats/canonical.md.
TEST(CanonicalTest, FixedExampleEncoding) {
  CanonicalWriter w = Example();
  EXPECT_EQ(ToHex(w.bytes()),
            "00000013"                                // domain tag length 19
            "74727573746d6f652f6578616d706c652f7631"  // "trustmoe/example/v1"
            "07"                                      // u8 7
            "01020304"                                // u32
            "0102030405060708"                        // u64
            "fffffffffffffffe"                        // i64 -2
            "01"                                      // bool true
            "00000002dead"                            // blob
            "000000026869"                            // string "hi"
            "1111111111111111111111111111111111111111111111111111111111111111");  // digest
  EXPECT_EQ(w.bytes().size(), 89u);
  EXPECT_EQ(DigestHex(w.Hash()),
            "8d7a0b2560d3527a11abb9d8ec28fcae923d1079346098a9d23805fabc2bbc9d");
}

TEST(CanonicalTest, RoundTripOfEveryType) {
  Bytes encoded = Example().Take();
  CanonicalReader r(encoded);
  ASSERT_TRUE(r.ExpectDomain(kDomain).ok());
  EXPECT_EQ(*r.U8(), 7);
  EXPECT_EQ(*r.U32(), 0x01020304u);
  EXPECT_EQ(*r.U64(), 0x0102030405060708u);
  EXPECT_EQ(*r.I64(), -2);
  EXPECT_EQ(*r.Bool(), true);
  EXPECT_EQ(*r.Blob(16), (Bytes{0xde, 0xad}));
  EXPECT_EQ(*r.Str(16), "hi");
  EXPECT_EQ(*r.Fixed(), Elevens());
  EXPECT_TRUE(r.ExpectEnd().ok());
}

TEST(CanonicalTest, RoundTripOfExtremes) {
  CanonicalWriter w("d");
  w.U8(0).U8(255).U32(0).U32(UINT32_MAX).U64(0).U64(UINT64_MAX);
  w.I64(std::numeric_limits<int64_t>::min()).I64(std::numeric_limits<int64_t>::max()).I64(0);
  w.Bool(false).Blob({}).Str("").Str(std::string("a\0b", 3));
  Bytes encoded = w.Take();
  CanonicalReader r(encoded);
  ASSERT_TRUE(r.ExpectDomain("d").ok());
  EXPECT_EQ(*r.U8(), 0);
  EXPECT_EQ(*r.U8(), 255);
  EXPECT_EQ(*r.U32(), 0u);
  EXPECT_EQ(*r.U32(), UINT32_MAX);
  EXPECT_EQ(*r.U64(), 0u);
  EXPECT_EQ(*r.U64(), UINT64_MAX);
  EXPECT_EQ(*r.I64(), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(*r.I64(), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(*r.I64(), 0);
  EXPECT_EQ(*r.Bool(), false);
  EXPECT_TRUE(r.Blob(0)->empty());
  EXPECT_EQ(*r.Str(0), "");
  EXPECT_EQ(*r.Str(3), std::string("a\0b", 3));
  EXPECT_TRUE(r.ExpectEnd().ok());
}

TEST(CanonicalTest, EveryTruncationIsAnError) {
  Bytes encoded = Example().Take();
  for (size_t len = 0; len < encoded.size(); ++len) {
    CanonicalReader r(ByteSpan(encoded).first(len));
    Status s = r.ExpectDomain(kDomain);
    if (s.ok()) s = r.U8().status();
    if (s.ok()) s = r.U32().status();
    if (s.ok()) s = r.U64().status();
    if (s.ok()) s = r.I64().status();
    if (s.ok()) s = r.Bool().status();
    if (s.ok()) s = r.Blob(16).status();
    if (s.ok()) s = r.Str(16).status();
    if (s.ok()) s = r.Fixed().status();
    if (s.ok()) s = r.ExpectEnd();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << "length " << len;
  }
}

TEST(CanonicalTest, TrailingBytesAreAnError) {
  Bytes encoded = CanonicalWriter("d").U32(5).Take();
  encoded.push_back(0);
  CanonicalReader r(encoded);
  ASSERT_TRUE(r.ExpectDomain("d").ok());
  ASSERT_TRUE(r.U32().ok());
  Status s = r.ExpectEnd();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("trailing"), std::string::npos) << s.ToString();
}

TEST(CanonicalTest, DeclaredLengthAboveTheBoundIsAnError) {
  Bytes encoded = CanonicalWriter("d").Blob(Bytes(10, 1)).Take();
  CanonicalReader r(encoded);
  ASSERT_TRUE(r.ExpectDomain("d").ok());
  Result<Bytes> blob = r.Blob(9);
  EXPECT_EQ(blob.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(blob.status().message().find("limit"), std::string::npos) << blob.status().ToString();

  // A hostile length of 4 GiB - 1 with a generous bound: refused as truncated, nothing
  // allocated.
  Bytes hostile = CanonicalWriter("d").U32(UINT32_MAX).Take();
  CanonicalReader h(hostile);
  ASSERT_TRUE(h.ExpectDomain("d").ok());
  EXPECT_EQ(h.Str(UINT32_MAX).status().code(), StatusCode::kInvalidArgument);
}

TEST(CanonicalTest, WrongDomainIsAnError) {
  Bytes encoded = CanonicalWriter("trustmoe/vote/v1").U8(1).Take();
  {
    CanonicalReader r(encoded);
    Status s = r.ExpectDomain("trustmoe/vote/v2");
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("trustmoe/vote/v1"), std::string::npos) << s.ToString();
  }
  {
    CanonicalReader r(encoded);
    EXPECT_EQ(r.ExpectDomain("trustmoe/vote").code(), StatusCode::kInvalidArgument);
  }
  {
    // A domain tag claiming to be huge is refused without reading it.
    Bytes hostile = {0xff, 0xff, 0xff, 0xff, 'x'};
    CanonicalReader r(hostile);
    EXPECT_EQ(r.ExpectDomain("trustmoe/vote/v1").code(), StatusCode::kInvalidArgument);
  }
}

TEST(CanonicalTest, BoolAcceptsOnlyZeroAndOne) {
  Bytes encoded = CanonicalWriter("d").U8(2).Take();
  CanonicalReader r(encoded);
  ASSERT_TRUE(r.ExpectDomain("d").ok());
  EXPECT_EQ(r.Bool().status().code(), StatusCode::kInvalidArgument);
}

TEST(CanonicalTest, DifferentFieldsGiveDifferentHashes) {
  // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
  EXPECT_NE(CanonicalWriter("d").Str("ab").Str("c").Hash(),
            CanonicalWriter("d").Str("a").Str("bc").Hash());
  EXPECT_NE(CanonicalWriter("d1").U8(0).Hash(), CanonicalWriter("d").U8(0).Hash());
}

}  // namespace
}  // namespace trustmoe::crypto
