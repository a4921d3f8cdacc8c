// Scripted, step-by-step tests of the PBFT replica: the test decides which message is delivered
// when, and moves time by hand.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "chain/pbft/replica.h"
#include "test_net.h"

namespace trustmoe::sim {
namespace {

using pbft::Envelope;
using pbft::MsgType;
using pbft::Reject;

bool IsType(const TestMsg& m, MsgType t) { return m.type == t; }

// A block for `seq` that the primary of `view` could have proposed, with other transactions.
Bytes OtherBlock(uint64_t seq, uint64_t view, uint64_t tx) {
  SimBlock b;
  b.header.height = seq;
  b.header.view = view;
  b.txs.push_back(Tx(tx));
  b.header.tx_root = TxRoot(b.txs);
  return b.Encode();
}

Envelope SignedPrePrepare(TestNet& net, uint32_t signer, uint64_t view, uint64_t seq, Bytes block) {
  Digest d = *net.nodes[signer].app->BlockDigest(block);
  return pbft::SignEnvelope(MsgType::kPrePrepare, signer,
                            pbft::PrePrepare{view, seq, d}.Body(signer), net.nodes[signer].key,
                            std::move(block));
}

Envelope SignedViewChange(TestNet& net, uint32_t signer, uint64_t view) {
  pbft::ViewChange vc;
  vc.new_view = view;
  return pbft::SignEnvelope(MsgType::kViewChange, signer, vc.Body(signer), net.nodes[signer].key);
}

Digest ProposedDigest(const TestNet& net, const std::vector<TestMsg>& pps) {
  EXPECT_FALSE(pps.empty());
  Envelope e = *pbft::DecodeEnvelope(pps.front().bytes, pbft::Limits::Of(net.config));
  return pbft::PrePrepare::Parse(e)->digest;
}

TEST(ReplicaTest, NormalCaseCommitsInOrderWithCertificate) {
  TestNet net;
  net.Run();
  ASSERT_TRUE(net.Submit(0, Tx(1)).ok());
  net.Run();
  const Digest digest = net.nodes[0].commits.at(0).digest;
  for (uint32_t i = 0; i < net.n(); ++i) {
    ASSERT_EQ(net.nodes[i].commits.size(), 1u) << "replica " << i;
    const pbft::CommitAction& c = net.nodes[i].commits[0];
    EXPECT_EQ(c.seq, 1u);
    EXPECT_EQ(c.digest, digest);
    EXPECT_TRUE(pbft::VerifyCommitCertificate(net.config, c.cert).ok());
    ASSERT_EQ(c.tx_ids.size(), 1u);
    EXPECT_EQ(c.tx_ids[0], pbft::ComputeTxId(Tx(1)));
    EXPECT_EQ(net.r(i).last_executed(), 1u);
  }
  // A backup relays what clients give it to the primary.
  ASSERT_TRUE(net.Submit(2, Tx(2)).ok());
  net.Run();
  for (uint32_t i = 0; i < net.n(); ++i) EXPECT_EQ(net.r(i).last_executed(), 2u);
  // A committed transaction is refused, and never proposed again.
  EXPECT_EQ(net.Submit(1, Tx(1)).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(net.Submit(0, Tx(1)).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(net.Submit(0, Bytes(600, 1)).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(net.Submit(0, MakeForgedTx(7, 99, AsBytes("x"))).ok());
}

TEST(ReplicaTest, CommitCertificateChecks) {
  TestNet net;
  net.Run();
  ASSERT_TRUE(net.Submit(0, Tx(1)).ok());
  net.Run();
  const pbft::CommitCertificate cert = net.nodes[1].commits.at(0).cert;
  ASSERT_TRUE(pbft::VerifyCommitCertificate(net.config, cert).ok());
  pbft::CommitCertificate twice = cert;
  twice.signatures[1] = twice.signatures[0];
  EXPECT_FALSE(pbft::VerifyCommitCertificate(net.config, twice).ok());
  pbft::CommitCertificate short_of_quorum = cert;
  short_of_quorum.signatures.pop_back();
  EXPECT_FALSE(pbft::VerifyCommitCertificate(net.config, short_of_quorum).ok());
  pbft::CommitCertificate other_digest = cert;
  other_digest.digest[0] ^= 1;
  EXPECT_FALSE(pbft::VerifyCommitCertificate(net.config, other_digest).ok());
  pbft::CommitCertificate stranger = cert;
  stranger.signatures[0].first = 9;
  EXPECT_FALSE(pbft::VerifyCommitCertificate(net.config, stranger).ok());
  auto decoded = pbft::CommitCertificate::Decode(cert.Encode(), net.n());
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, cert);
}

TEST(ReplicaTest, RejectsBadSignaturesAndHostileBytes) {
  TestNet net;
  net.Run();
  ASSERT_TRUE(net.Submit(0, Tx(1)).ok());
  for (const TestMsg& m :
       net.Take([](const TestMsg& m) { return IsType(m, MsgType::kPrePrepare); })) {
    net.Deliver(m);
  }
  // r1's prepare to r2 with one signature bit flipped.
  std::vector<TestMsg> prepares = net.Take(
      [](const TestMsg& m) { return IsType(m, MsgType::kPrepare) && m.from == 1 && m.to == 2; });
  ASSERT_EQ(prepares.size(), 1u);
  Envelope e = *pbft::DecodeEnvelope(prepares[0].bytes, pbft::Limits::Of(net.config));
  Envelope bad = e;
  bad.signature[5] ^= 0x01;
  pbft::Replica& r2 = net.r(2);
  net.Apply(2, r2.OnMessage(bad.Encode(), net.now));
  EXPECT_EQ(r2.stats().Rejected(Reject::kBadSignature), 1u);
  // Signed by r3 but claiming to be r1.
  Envelope spoofed = pbft::SignEnvelope(MsgType::kPrepare, 1, e.body, net.nodes[3].key);
  net.Apply(2, r2.OnMessage(spoofed.Encode(), net.now));
  EXPECT_EQ(r2.stats().Rejected(Reject::kBadSignature), 2u);
  // A sender that is not a validator.
  pbft::Prepare p = *pbft::Prepare::Parse(e);
  Envelope stranger = pbft::SignEnvelope(MsgType::kPrepare, 9, p.Body(9), net.nodes[3].key);
  net.Apply(2, r2.OnMessage(stranger.Encode(), net.now));
  EXPECT_EQ(r2.stats().Rejected(Reject::kUnknownSender), 1u);
  // Its own prepare coming back.
  Envelope own = pbft::SignEnvelope(MsgType::kPrepare, 2, p.Body(2), net.nodes[2].key);
  net.Apply(2, r2.OnMessage(own.Encode(), net.now));
  EXPECT_EQ(r2.stats().Rejected(Reject::kFromSelf), 1u);
  // Garbage and oversized bytes.
  net.Apply(2, r2.OnMessage(Bytes{1, 2, 3}, net.now));
  net.Apply(2, r2.OnMessage(Bytes{}, net.now));
  EXPECT_EQ(r2.stats().Rejected(Reject::kMalformed), 2u);
  net.Apply(2, r2.OnMessage(Bytes(net.config.message_bytes_max + 1, 0), net.now));
  EXPECT_EQ(r2.stats().Rejected(Reject::kOversized), 1u);
  // None of it counted: the genuine prepare still completes the quorum.
  net.Deliver(prepares[0]);
  net.Run();
  for (uint32_t i = 0; i < net.n(); ++i) EXPECT_EQ(net.r(i).last_executed(), 1u);
}

TEST(ReplicaTest, ConflictingPrePrepareIsRejected) {
  TestNet net;
  net.Run();
  ASSERT_TRUE(net.Submit(0, Tx(1)).ok());
  std::vector<TestMsg> pps =
      net.Take([](const TestMsg& m) { return IsType(m, MsgType::kPrePrepare) && m.to == 1; });
  ASSERT_EQ(pps.size(), 1u);
  net.Deliver(pps[0]);
  size_t sent = net.inflight.size();
  Envelope other = SignedPrePrepare(net, 0, 0, 1, OtherBlock(1, 0, 50));
  net.Apply(1, net.r(1).OnMessage(other.Encode(), net.now));
  EXPECT_EQ(net.r(1).stats().Rejected(Reject::kConflict), 1u);
  EXPECT_EQ(net.inflight.size(), sent) << "no second prepare for (view 0, seq 1)";
  // A pre-prepare from a backup, and one whose block does not match its digest.
  Envelope from_backup = SignedPrePrepare(net, 2, 0, 2, OtherBlock(2, 0, 51));
  net.Apply(1, net.r(1).OnMessage(from_backup.Encode(), net.now));
  EXPECT_EQ(net.r(1).stats().Rejected(Reject::kNotPrimary), 1u);
  Envelope mismatched = SignedPrePrepare(net, 0, 0, 1, OtherBlock(1, 0, 52));
  mismatched.payload = OtherBlock(1, 0, 53);
  net.Apply(3, net.r(3).OnMessage(mismatched.Encode(), net.now));
  EXPECT_EQ(net.r(3).stats().Rejected(Reject::kDigestMismatch), 1u);
  // A block the application refuses (its header does not link to the chain) is not prepared.
  Envelope invalid = SignedPrePrepare(net, 0, 0, 1, OtherBlock(1, 0, 54));
  net.Apply(2, net.r(2).OnMessage(invalid.Encode(), net.now));
  EXPECT_EQ(net.r(2).stats().Rejected(Reject::kInvalidBlock), 1u);
}

TEST(ReplicaTest, ViewChangeAfterPrimarySilencePreservesPreparedBlock) {
  TestNet net;
  net.Run();
  ASSERT_TRUE(net.Submit(0, Tx(1)).ok());
  std::vector<TestMsg> pps =
      net.Take([](const TestMsg& m) { return IsType(m, MsgType::kPrePrepare); });
  const Digest prepared = ProposedDigest(net, pps);
  for (const TestMsg& m : pps) net.Deliver(m);
  // Everyone prepares; every commit is lost; then the primary goes silent.
  net.Run([](const TestMsg& m) { return !IsType(m, MsgType::kCommit); });
  for (uint32_t i = 0; i < net.n(); ++i) EXPECT_EQ(net.r(i).last_executed(), 0u);
  net.Crash(0);
  net.Advance(net.config.view_change_timeout_ms + 1);
  for (uint32_t i = 1; i < net.n(); ++i) {
    EXPECT_EQ(net.r(i).view(), 1u);
    EXPECT_FALSE(net.r(i).view_active());
  }
  net.Run();
  for (uint32_t i = 1; i < net.n(); ++i) {
    EXPECT_EQ(net.r(i).view(), 1u) << "replica " << i;
    EXPECT_TRUE(net.r(i).view_active());
    ASSERT_EQ(net.nodes[i].commits.size(), 1u) << "replica " << i;
    EXPECT_EQ(net.nodes[i].commits[0].seq, 1u);
    EXPECT_EQ(net.nodes[i].commits[0].digest, prepared) << "the prepared block survives";
    EXPECT_EQ(net.nodes[i].commits[0].cert.view, 1u);
  }
  EXPECT_TRUE(net.r(1).IsPrimary());
  // The new primary goes on proposing.
  ASSERT_TRUE(net.Submit(1, Tx(2)).ok());
  net.Run();
  for (uint32_t i = 1; i < net.n(); ++i) EXPECT_EQ(net.r(i).last_executed(), 2u);
}

TEST(ReplicaTest, CheckpointsCollectGarbage) {
  TestNet net;
  net.Run();
  for (uint64_t k = 1; k <= 9; ++k) {
    ASSERT_TRUE(net.Submit(0, Tx(k)).ok());
    net.Run();
  }
  for (uint32_t i = 0; i < net.n(); ++i) {
    EXPECT_EQ(net.r(i).last_executed(), 9u);
    EXPECT_EQ(net.r(i).stable_seq(), 8u);
    EXPECT_LE(net.r(i).log_size(), 1u) << "only seq 9 stays in the log";
    EXPECT_EQ(net.nodes[i].disk.count("pbft/checkpoint"), 1u);
    for (const auto& [key, value] : net.nodes[i].disk) {
      if (key.rfind("pbft/slot/", 0) == 0) {
        EXPECT_GT(std::stoull(key.substr(10)), 8u) << key;
      }
    }
  }
  // Below the low watermark, and above the high one.
  const uint64_t stale = net.r(1).stats().Rejected(Reject::kStale);
  const uint64_t outside = net.r(1).stats().Rejected(Reject::kOutsideWindow);
  Envelope old_pp = SignedPrePrepare(net, 0, 0, 8, OtherBlock(8, 0, 60));
  net.Apply(1, net.r(1).OnMessage(old_pp.Encode(), net.now));
  EXPECT_EQ(net.r(1).stats().Rejected(Reject::kStale), stale + 1);
  Envelope far_pp = SignedPrePrepare(net, 0, 0, 17, OtherBlock(17, 0, 61));
  net.Apply(1, net.r(1).OnMessage(far_pp.Encode(), net.now));
  EXPECT_EQ(net.r(1).stats().Rejected(Reject::kOutsideWindow), outside + 1);
}

TEST(ReplicaTest, LaggingReplicaCatchesUpByStateTransfer) {
  TestNet net;
  net.Run();
  net.nodes[3].up = false;  // cut off, not crashed
  for (uint64_t k = 1; k <= 10; ++k) {
    ASSERT_TRUE(net.Submit(0, Tx(k)).ok());
    net.Run();
  }
  EXPECT_EQ(net.r(3).last_executed(), 0u);
  net.nodes[3].up = true;
  for (int round = 0; round < 20 && net.r(3).last_executed() < 10; ++round) {
    net.Advance(net.config.status_interval_ms);
    net.Run();
  }
  ASSERT_EQ(net.r(3).last_executed(), 10u);
  EXPECT_EQ(net.r(3).stats().blocks_via_state_transfer, 10u);
  EXPECT_EQ(net.r(3).stable_seq(), 8u);
  ASSERT_EQ(net.nodes[3].commits.size(), 10u);
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(net.nodes[3].commits[i].digest, net.nodes[0].commits[i].digest);
    EXPECT_TRUE(net.nodes[3].commits[i].via_state_transfer);
  }
  // And then takes part in the normal case again.
  ASSERT_TRUE(net.Submit(0, Tx(11)).ok());
  net.Run();
  EXPECT_EQ(net.r(3).last_executed(), 11u);
  EXPECT_FALSE(net.nodes[3].commits.back().via_state_transfer);
}

TEST(ReplicaTest, StateTransferRejectsForgedCertificates) {
  TestNet net;
  net.Run();
  // r1 answers r3 with a block whose certificate carries one signature only.
  SimBlock b;
  b.header.height = 1;
  b.header.prev_hash = net.nodes[3].app->Head().block_digest;
  b.txs.push_back(Tx(1));
  b.header.tx_root = TxRoot(b.txs);
  pbft::Blocks reply;
  pbft::BlockEntry entry{1, b.Encode(), {}};
  entry.cert.seq = 1;
  entry.cert.digest = *net.nodes[3].app->BlockDigest(entry.block);
  Bytes body = pbft::Commit{0, 1, entry.cert.digest}.Body(1);
  entry.cert.signatures.push_back({1, net.nodes[1].key.Sign(body)});
  reply.entries.push_back(entry);
  Envelope e = pbft::SignEnvelope(MsgType::kBlocks, 1, reply.Body(1), net.nodes[1].key);
  net.Apply(3, net.r(3).OnMessage(e.Encode(), net.now));
  EXPECT_EQ(net.r(3).stats().Rejected(Reject::kBadCertificate), 1u);
  EXPECT_EQ(net.r(3).last_executed(), 0u);
}

TEST(ReplicaTest, RestartFromDurableStateKeepsWhatItSigned) {
  TestNet net;
  net.Run();
  ASSERT_TRUE(net.Submit(0, Tx(1)).ok());
  std::vector<TestMsg> pps =
      net.Take([](const TestMsg& m) { return IsType(m, MsgType::kPrePrepare); });
  const Digest proposed = ProposedDigest(net, pps);
  for (const TestMsg& m : pps) net.Deliver(m);
  net.Run([](const TestMsg& m) { return !IsType(m, MsgType::kCommit); });
  net.Crash(2);
  net.Take([](const TestMsg& m) { return m.to == 2 || m.from == 2; });
  net.Start(2);
  EXPECT_EQ(net.r(2).view(), 0u);
  EXPECT_TRUE(net.r(2).view_active());
  // The restarted replica still holds its pre-prepare for (0, 1): a conflicting one is refused.
  Envelope other = SignedPrePrepare(net, 0, 0, 1, OtherBlock(1, 0, 70));
  net.Apply(2, net.r(2).OnMessage(other.Encode(), net.now));
  EXPECT_EQ(net.r(2).stats().Rejected(Reject::kConflict), 1u);
  // Retransmission after the restart completes the block.
  net.Advance(net.config.status_interval_ms);
  net.Run();
  for (uint32_t i = 0; i < net.n(); ++i) {
    ASSERT_EQ(net.nodes[i].commits.size(), 1u) << "replica " << i;
    EXPECT_EQ(net.nodes[i].commits[0].digest, proposed);
  }
  // A replica restarted in the middle of a view change resumes waiting for that view.
  net.Apply(3, net.r(3).OnMessage(SignedViewChange(net, 1, 4).Encode(), net.now));
  net.Apply(3, net.r(3).OnMessage(SignedViewChange(net, 2, 4).Encode(), net.now));
  EXPECT_EQ(net.r(3).view(), 4u);
  EXPECT_FALSE(net.r(3).view_active());
  net.Crash(3);
  net.Start(3);
  EXPECT_EQ(net.r(3).view(), 4u);
  EXPECT_FALSE(net.r(3).view_active());
  EXPECT_EQ(net.r(3).last_executed(), 1u);
}

TEST(ReplicaTest, CorruptDurableStateIsRefused) {
  TestNet net;
  pbft::DurableState disk{{"pbft/view", Bytes{1, 2, 3}}};
  auto r = pbft::Replica::Create(net.config, 0, net.nodes[0].key, net.nodes[0].app.get(), disk);
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  pbft::DurableState unknown{{"pbft/what", Bytes{}}};
  r = pbft::Replica::Create(net.config, 0, net.nodes[0].key, net.nodes[0].app.get(), unknown);
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  r = pbft::Replica::Create(net.config, 1, net.nodes[0].key, net.nodes[0].app.get(), {});
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << "key of another validator";
}

TEST(ReplicaTest, ViewsWithoutCertificatesAreRefused) {
  TestNet net;
  net.Run();
  pbft::Replica& r2 = net.r(2);
  // A new-view for view 1 from its primary, made of one view-change repeated.
  Envelope vc = SignedViewChange(net, 1, 1);
  pbft::NewView nv;
  nv.view = 1;
  nv.view_changes = {vc, vc, vc};
  Envelope nv_env = pbft::SignEnvelope(MsgType::kNewView, 1, nv.Body(1), net.nodes[1].key);
  net.Apply(2, r2.OnMessage(nv_env.Encode(), net.now));
  EXPECT_EQ(r2.stats().Rejected(Reject::kBadNewView), 1u);
  // ... or claiming view-changes of others that r1 signed itself.
  nv.view_changes = {vc, vc, vc};
  nv.view_changes[1].sender = 2;
  nv.view_changes[1].body = pbft::ViewChange{1, {}, {}, {}}.Body(2);
  nv.view_changes[2].sender = 3;
  nv.view_changes[2].body = pbft::ViewChange{1, {}, {}, {}}.Body(3);
  nv_env = pbft::SignEnvelope(MsgType::kNewView, 1, nv.Body(1), net.nodes[1].key);
  net.Apply(2, r2.OnMessage(nv_env.Encode(), net.now));
  EXPECT_EQ(r2.stats().Rejected(Reject::kBadSignature), 1u);
  // A new-view for view 1 from a replica that is not its primary.
  nv_env = pbft::SignEnvelope(MsgType::kNewView, 3, nv.Body(3), net.nodes[3].key);
  net.Apply(2, r2.OnMessage(nv_env.Encode(), net.now));
  EXPECT_EQ(r2.stats().Rejected(Reject::kNotPrimary), 1u);
  // A pre-prepare for a view nobody started.
  Envelope pp = SignedPrePrepare(net, 1, 1, 1, OtherBlock(1, 1, 80));
  net.Apply(2, r2.OnMessage(pp.Encode(), net.now));
  EXPECT_EQ(r2.stats().Rejected(Reject::kWrongView), 1u);
  EXPECT_EQ(r2.view(), 0u);
  EXPECT_TRUE(r2.view_active());
  // One replica asking for view 7 moves nobody; f + 1 do.
  net.Apply(2, r2.OnMessage(SignedViewChange(net, 1, 7).Encode(), net.now));
  EXPECT_EQ(r2.view(), 0u);
  EXPECT_TRUE(r2.view_active());
  net.Apply(2, r2.OnMessage(SignedViewChange(net, 3, 7).Encode(), net.now));
  EXPECT_EQ(r2.view(), 7u);
  EXPECT_FALSE(r2.view_active());
}

TEST(ReplicaTest, NewViewReachesAReplicaThatMissedIt) {
  TestNet net;
  net.Run();
  // r0 is silent; r3 misses the whole view change.
  net.Crash(0);
  net.nodes[3].up = false;
  ASSERT_TRUE(net.Submit(1, Tx(1)).ok());
  ASSERT_TRUE(net.Submit(2, Tx(1)).ok());
  net.Advance(net.config.view_change_timeout_ms + 1);
  net.Run();
  EXPECT_EQ(net.r(1).view(), 1u);
  EXPECT_FALSE(net.r(1).view_active()) << "two of four cannot start view 1";
  net.nodes[3].up = true;
  ASSERT_TRUE(net.Submit(3, Tx(1)).ok());
  for (int round = 0; round < 30 && net.r(3).last_executed() < 1; ++round) {
    net.Advance(net.config.status_interval_ms);
    net.Run();
  }
  for (uint32_t i = 1; i < net.n(); ++i) {
    EXPECT_EQ(net.r(i).view(), 1u);
    EXPECT_TRUE(net.r(i).view_active());
    EXPECT_EQ(net.r(i).last_executed(), 1u);
  }
}

// A primary that timed out on its own proposal changes view alone while its peers commit that
// proposal; it catches up by state transfer, still in its view change. A transaction that a
// client then gives to it alone must reach the others (it relays while its view is inactive),
// so that they see it pending, join the view change, and the next primary commits it.
TEST(ReplicaTest, TxGivenOnlyToAPrimaryChangingViewAloneCommits) {
  TestNet net;
  net.Run();
  ASSERT_TRUE(net.Submit(0, Tx(1)).ok());
  // Every message to r0 is delayed: the others commit block 1, r0 hears nothing of it.
  std::vector<TestMsg> delayed;
  net.Run([&delayed](const TestMsg& m) {
    if (m.to != 0) return true;
    delayed.push_back(m);
    return false;
  });
  for (uint32_t i = 1; i < net.n(); ++i) ASSERT_EQ(net.r(i).last_executed(), 1u) << i;
  ASSERT_EQ(net.r(0).last_executed(), 0u);

  // r0 times out on its own proposal and asks for view 1, alone; the others have nothing
  // pending and stay in view 0.
  net.Advance(net.config.view_change_timeout_ms + 1);
  ASSERT_EQ(net.r(0).view(), 1u);
  ASSERT_FALSE(net.r(0).view_active());
  for (const TestMsg& m : delayed) net.Deliver(m);  // too late: view 0 is over for r0
  for (int round = 0; round < 10 && net.r(0).last_executed() < 1; ++round) {
    net.Advance(net.config.status_interval_ms);
    net.Run();
  }
  ASSERT_EQ(net.r(0).last_executed(), 1u);
  EXPECT_EQ(net.r(0).stats().blocks_via_state_transfer, 1u);
  ASSERT_FALSE(net.r(0).view_active()) << "r0 must still be changing view alone";
  for (uint32_t i = 1; i < net.n(); ++i) {
    ASSERT_EQ(net.r(i).view(), 0u) << i;
    ASSERT_TRUE(net.r(i).view_active()) << i;
  }

  // The client gives tx 2 to r0 only.
  ASSERT_TRUE(net.Submit(0, Tx(2)).ok());
  net.Run();
  const pbft::TxId id = pbft::ComputeTxId(Tx(2));
  for (uint32_t i = 1; i < net.n(); ++i) EXPECT_TRUE(net.r(i).IsPending(id)) << i;
  // Bound: the backups' view-change timeout, the new-view timeout of r0 (doubled once), and a
  // few status intervals for the messages.
  const int64_t bound_ms = 3 * net.config.view_change_timeout_ms;
  int64_t waited_ms = 0;
  auto committed_everywhere = [&net] {
    for (uint32_t i = 0; i < net.n(); ++i) {
      if (net.r(i).last_executed() < 2) return false;
    }
    return true;
  };
  while (waited_ms < bound_ms && !committed_everywhere()) {
    net.Advance(net.config.status_interval_ms);
    waited_ms += net.config.status_interval_ms;
    net.Run();
  }
  ASSERT_TRUE(committed_everywhere()) << "tx 2 not committed within " << bound_ms << " ms";
  for (uint32_t i = 0; i < net.n(); ++i) {
    EXPECT_EQ(net.r(i).view(), 1u) << i;
    EXPECT_TRUE(net.r(i).view_active()) << i;
    EXPECT_FALSE(net.r(i).IsPending(id)) << i;
    const pbft::CommitAction& last = net.nodes[i].commits.back();
    EXPECT_EQ(last.seq, 2u) << i;
    ASSERT_EQ(last.tx_ids.size(), 1u) << i;
    EXPECT_EQ(last.tx_ids[0], id) << i;
  }
}

// Every kind of message the protocol sends, mutated at random, fed to a live replica: it must
// neither crash nor stop working.
TEST(ReplicaTest, SurvivesMutatedMessages) {
  TestNet net;
  net.tap = true;
  net.Run();
  for (uint64_t k = 1; k <= 5; ++k) {
    ASSERT_TRUE(net.Submit(0, Tx(k)).ok());
    net.Run();
  }
  ASSERT_TRUE(net.Submit(0, Tx(6)).ok());
  net.Run([](const TestMsg& m) { return !IsType(m, MsgType::kCommit); });
  net.Crash(0);
  net.Advance(net.config.view_change_timeout_ms + 1);
  net.Run();
  std::set<MsgType> types;
  for (const TestMsg& m : net.tapped) types.insert(m.type);
  EXPECT_GE(types.size(), 7u);

  TestNet target;
  target.Run();
  std::mt19937_64 rng(42);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  for (int i = 0; i < 4000; ++i) {
    Bytes m = net.tapped[pick(net.tapped.size())].bytes;
    switch (pick(4)) {
      case 0:
        for (int flips = 0; flips < 3; ++flips)
          m[pick(m.size())] ^= static_cast<uint8_t>(1 + pick(255));
        break;
      case 1:
        m.resize(pick(m.size() + 1));
        break;
      case 2:
        m.insert(m.begin() + static_cast<long>(pick(m.size())), static_cast<uint8_t>(pick(256)));
        break;
      default: {
        size_t at = pick(m.size());
        for (size_t j = at; j < std::min(m.size(), at + 4); ++j) m[j] = 0xff;
        break;
      }
    }
    const uint32_t to = 1 + static_cast<uint32_t>(pick(3));
    target.Apply(to, target.r(to).OnMessage(m, target.now));
  }
  target.inflight.clear();
  ASSERT_TRUE(target.Submit(0, Tx(100)).ok());
  target.Run();
  for (uint32_t i = 0; i < target.n(); ++i) EXPECT_EQ(target.r(i).last_executed(), 1u);
}

}  // namespace
}  // namespace trustmoe::sim
