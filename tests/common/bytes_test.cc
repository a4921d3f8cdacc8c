#include "common/bytes.h"

#include <gtest/gtest.h>

namespace trustmoe {
namespace {

TEST(HexTest, RoundTrip) {
  Bytes data = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
  EXPECT_EQ(ToHex(data), "00017f80abff");
  Result<Bytes> back = FromHex("00017f80abff");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, data);
}

TEST(HexTest, AcceptsUpperCase) {
  Result<Bytes> r = FromHex("ABcd");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, (Bytes{0xab, 0xcd}));
}

TEST(HexTest, Empty) {
  EXPECT_EQ(ToHex({}), "");
  Result<Bytes> r = FromHex("");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
}

TEST(HexTest, RejectsOddLengthAndBadDigits) {
  EXPECT_EQ(FromHex("abc").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(FromHex("zz").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(FromHex("0g").status().code(), StatusCode::kInvalidArgument);
}

TEST(HexTest, AsBytesViewsString) { EXPECT_EQ(ToHex(AsBytes("hi")), "6869"); }

TEST(QuoteForMessageTest, KeepsPrintableAsciiAndEscapesTheRest) {
  EXPECT_EQ(QuoteForMessage(std::string_view("w1")), "\"w1\"");
  EXPECT_EQ(QuoteForMessage(std::string_view("a\"b\\c\n\xff", 7)), "\"a\\x22b\\x5cc\\x0a\\xff\"");
  EXPECT_EQ(QuoteForMessage(std::string(100, 'x'), 4), "\"xxxx...\"");
  Bytes raw = {0x00, 0x41};
  EXPECT_EQ(QuoteForMessage(ByteSpan(raw)), "\"\\x00A\"");
}

}  // namespace
}  // namespace trustmoe
