// Encoding, decoding and limits of PBFT messages and configuration.
#include <gtest/gtest.h>

#include "chain/pbft/messages.h"
#include "crypto/canonical.h"
#include "test_net.h"

namespace trustmoe::sim {
namespace {

using pbft::Envelope;
using pbft::MsgType;

pbft::Config TestConfig() { return TestNet().config; }

crypto::PrivateKey Key(uint32_t i) {
  return *crypto::PrivateKey::FromSeed(
      crypto::CanonicalWriter("trustmoe/test/validator-key/v1").U32(i).Hash());
}

Envelope RoundTrip(const Envelope& e, const pbft::Config& config) {
  Result<Envelope> back = pbft::DecodeEnvelope(e.Encode(), pbft::Limits::Of(config));
  EXPECT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->type, e.type);
  EXPECT_EQ(back->sender, e.sender);
  EXPECT_EQ(back->body, e.body);
  EXPECT_EQ(back->signature, e.signature);
  EXPECT_EQ(back->payload, e.payload);
  EXPECT_TRUE(pbft::VerifyEnvelope(config, *back));
  return *back;
}

TEST(MessagesTest, BodiesRoundTripAndStartWithTheirDomain) {
  pbft::Config config = TestConfig();
  Digest d{};
  d[3] = 9;
  Envelope pp = pbft::SignEnvelope(MsgType::kPrePrepare, 0, pbft::PrePrepare{2, 5, d}.Body(0),
                                   Key(0), Bytes{1, 2, 3});
  pbft::PrePrepare parsed = *pbft::PrePrepare::Parse(RoundTrip(pp, config));
  EXPECT_EQ(parsed.view, 2u);
  EXPECT_EQ(parsed.seq, 5u);
  EXPECT_EQ(parsed.digest, d);
  // The body is the canonical encoding: domain tag, sender, fields.
  Bytes expected =
      crypto::CanonicalWriter("trustmoe/pbft/pre-prepare/v1").U32(0).U64(2).U64(5).Fixed(d).Take();
  EXPECT_EQ(pp.body, expected);

  Envelope prepare =
      pbft::SignEnvelope(MsgType::kPrepare, 1, pbft::Prepare{2, 5, d}.Body(1), Key(1));
  EXPECT_EQ(pbft::Prepare::Parse(RoundTrip(prepare, config))->seq, 5u);
  // A prepare body is not a commit body: the domains differ.
  Envelope as_commit = prepare;
  as_commit.type = MsgType::kCommit;
  EXPECT_FALSE(pbft::DecodeEnvelope(as_commit.Encode(), pbft::Limits::Of(config)).ok());

  pbft::Checkpoint cp{8, d, d};
  Envelope cp_env = pbft::SignEnvelope(MsgType::kCheckpoint, 2, cp.Body(2), Key(2));
  EXPECT_EQ(*pbft::Checkpoint::Parse(RoundTrip(cp_env, config)), cp);

  pbft::ViewChange vc;
  vc.new_view = 3;
  vc.stable = cp;
  vc.checkpoint_proof = {cp_env, cp_env};
  vc.prepared.push_back(pbft::PreparedCert{pp.Stripped(), {prepare}});
  Envelope vc_env = pbft::SignEnvelope(MsgType::kViewChange, 3, vc.Body(3), Key(3),
                                       pbft::EncodeAttachedBlocks({{5, Bytes{1, 2, 3}}}));
  Envelope vc_back = RoundTrip(vc_env, config);
  pbft::ViewChange vc_parsed = *pbft::ViewChange::Parse(vc_back, pbft::Limits::Of(config));
  EXPECT_EQ(vc_parsed.new_view, 3u);
  EXPECT_EQ(vc_parsed.checkpoint_proof.size(), 2u);
  ASSERT_EQ(vc_parsed.prepared.size(), 1u);
  EXPECT_TRUE(vc_parsed.prepared[0].pre_prepare.payload.empty()) << "embedded in stripped form";
  auto attached = pbft::DecodeAttachedBlocks(vc_back.payload, pbft::Limits::Of(config));
  ASSERT_TRUE(attached.ok());
  EXPECT_EQ((*attached)[0].seq, 5u);

  pbft::NewView nv;
  nv.view = 3;
  nv.view_changes = {vc_env.Stripped()};
  nv.pre_prepares = {pp.Stripped()};
  Envelope nv_env = pbft::SignEnvelope(MsgType::kNewView, 3, nv.Body(3), Key(3));
  EXPECT_EQ(pbft::NewView::Parse(RoundTrip(nv_env, config), pbft::Limits::Of(config))
                ->view_changes.size(),
            1u);

  pbft::StatusMsg status{4, false, 10, 8};
  Envelope st = pbft::SignEnvelope(MsgType::kStatus, 1, status.Body(1), Key(1));
  pbft::StatusMsg st_back = *pbft::StatusMsg::Parse(RoundTrip(st, config));
  EXPECT_EQ(st_back.view, 4u);
  EXPECT_FALSE(st_back.view_active);

  pbft::Request request{{Bytes{1}, Bytes{2, 3}}};
  Envelope rq = pbft::SignEnvelope(MsgType::kRequest, 1, request.Body(1), Key(1));
  EXPECT_EQ(pbft::Request::Parse(RoundTrip(rq, config), pbft::Limits::Of(config))->txs.size(), 2u);

  pbft::FetchBlocks fetch{7, 3};
  Envelope fb = pbft::SignEnvelope(MsgType::kFetchBlocks, 2, fetch.Body(2), Key(2));
  EXPECT_EQ(pbft::FetchBlocks::Parse(RoundTrip(fb, config))->from_seq, 7u);

  pbft::Blocks blocks;
  blocks.stable = cp;
  blocks.checkpoint_proof = {cp_env};
  blocks.entries.push_back(pbft::BlockEntry{7, Bytes{4, 5}, pbft::CommitCertificate{1, 7, d, {}}});
  Envelope bl = pbft::SignEnvelope(MsgType::kBlocks, 2, blocks.Body(2), Key(2));
  pbft::Blocks bl_back = *pbft::Blocks::Parse(RoundTrip(bl, config), pbft::Limits::Of(config));
  ASSERT_EQ(bl_back.entries.size(), 1u);
  EXPECT_EQ(bl_back.entries[0].cert.seq, 7u);
}

TEST(MessagesTest, HostileBytesAreRefusedNotTrusted) {
  pbft::Config config = TestConfig();
  pbft::Limits limits = pbft::Limits::Of(config);
  Digest d{};
  Envelope prepare =
      pbft::SignEnvelope(MsgType::kPrepare, 1, pbft::Prepare{0, 1, d}.Body(1), Key(1));
  Bytes wire = prepare.Encode();
  // Every truncation fails cleanly.
  for (size_t len = 0; len < wire.size(); ++len) {
    Bytes cut(wire.begin(), wire.begin() + static_cast<long>(len));
    EXPECT_FALSE(pbft::DecodeEnvelope(cut, limits).ok()) << len;
  }
  // Trailing bytes, unknown types, oversized messages.
  Bytes longer = wire;
  longer.push_back(0);
  EXPECT_FALSE(pbft::DecodeEnvelope(longer, limits).ok());
  Bytes unknown = wire;
  unknown[4 + 25] = 0;
  EXPECT_FALSE(pbft::DecodeEnvelope(unknown, limits).ok());
  unknown[4 + 25] = 99;
  EXPECT_FALSE(pbft::DecodeEnvelope(unknown, limits).ok());
  EXPECT_FALSE(pbft::DecodeEnvelope(Bytes(limits.message_bytes_max + 1, 0), limits).ok());
  // A signature that is not 64 bytes.
  crypto::CanonicalWriter w("trustmoe/pbft/envelope/v1");
  w.U8(2).Blob(prepare.body).Blob(Bytes(63, 0)).Blob(Bytes{});
  EXPECT_FALSE(pbft::DecodeEnvelope(w.bytes(), limits).ok());
  // A request declaring more transactions than allowed.
  crypto::CanonicalWriter body("trustmoe/pbft/request/v1");
  body.U32(1).U32(config.request_txs_max + 1);
  Envelope big = pbft::SignEnvelope(MsgType::kRequest, 1, body.Take(), Key(1));
  EXPECT_FALSE(pbft::Request::Parse(big, limits).ok());
  // A view-change declaring more prepared certificates than the window holds.
  crypto::CanonicalWriter vc("trustmoe/pbft/view-change/v1");
  vc.U32(1).U64(1).U64(0).Fixed(d).Fixed(d).U32(0).U32(
      static_cast<uint32_t>(config.watermark_window + 1));
  Envelope vc_env = pbft::SignEnvelope(MsgType::kViewChange, 1, vc.Take(), Key(1));
  EXPECT_FALSE(pbft::ViewChange::Parse(vc_env, limits).ok());
  // A commit certificate naming more signers than there are validators.
  pbft::CommitCertificate cert{0, 1, d, {}};
  for (uint32_t i = 0; i < 5; ++i) cert.signatures.push_back({i % 4, crypto::Signature{}});
  EXPECT_FALSE(pbft::CommitCertificate::Decode(cert.Encode(), 4).ok());
}

TEST(MessagesTest, NullBlockDigestsDifferPerSequence) {
  EXPECT_NE(pbft::NullBlockDigest(1), pbft::NullBlockDigest(2));
  EXPECT_EQ(pbft::NullBlockDigest(3), pbft::NullBlockDigest(3));
}

TEST(ConfigTest, ValidateNamesTheProblem) {
  pbft::Config good = TestConfig();
  EXPECT_TRUE(good.Validate().ok());
  EXPECT_EQ(good.quorum(), 3u);
  EXPECT_EQ(good.Primary(5), 1u);

  pbft::Config c = good;
  c.f = 2;
  EXPECT_FALSE(c.Validate().ok()) << "4 validators cannot tolerate 2 faults";
  c = good;
  c.validators[1] = c.validators[0];
  EXPECT_FALSE(c.Validate().ok());
  c = good;
  c.watermark_window = 6;
  EXPECT_FALSE(c.Validate().ok());
  c = good;
  c.message_bytes_max = 1024;
  EXPECT_FALSE(c.Validate().ok());
  c = good;
  c.view_change_timeout_max_ms = 10;
  EXPECT_FALSE(c.Validate().ok());
  c = good;
  c.validators.clear();
  EXPECT_FALSE(c.Validate().ok());
  // Defaults are consistent for four validators.
  pbft::Config defaults;
  defaults.validators = good.validators;
  EXPECT_TRUE(defaults.Validate().ok()) << defaults.Validate().ToString();
  // Quorums intersect in f + 1 also when n > 3f + 1.
  pbft::Config five = good;
  five.validators.push_back(Key(4).public_key());
  EXPECT_EQ(five.quorum(), 4u);
}

}  // namespace
}  // namespace trustmoe::sim
