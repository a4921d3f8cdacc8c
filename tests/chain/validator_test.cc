// Four validator nodes in one process on loopback ports: transactions commit and come back with
// inclusion proofs that verify against the genesis; hostile input over gRPC is refused with
// the right code and commits nothing; waiting calls end at their deadline and at shutdown.
#include "chain/validator/validator.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <thread>

#include "chain/ledger/block.h"
#include "chain/ledger/result.h"
#include "chain/ledger/tx.h"
#include "chain/ledger/verdict.h"
#include "net/transport.h"
#include "tests/common/test_dir.h"
#include "trustmoe/v1/chain.grpc.pb.h"

namespace trustmoe::validator {
namespace {

using ::testing::HasSubstr;

constexpr char kChain[] = "validator-test";

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string AsString(const Bytes& b) { return std::string(b.begin(), b.end()); }
Bytes AsBytesOf(const std::string& s) { return Bytes(s.begin(), s.end()); }

// Waits for `cond` up to `deadline_ms`, polling.
template <typename Fn>
bool WaitFor(Fn cond, int64_t deadline_ms = 20000) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(deadline_ms);
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

class ClusterTest : public ::testing::Test {
 protected:
  static constexpr uint32_t kN = 4;

  void SetUp() override {
    auto admin = crypto::PrivateKey::Generate();
    ASSERT_TRUE(admin.ok());
    admin_ = *admin;
    genesis_.chain_id = kChain;
    genesis_.created_unix_ms = SystemClock::Get()->NowUnixMs();
    genesis_.f = 1;
    genesis_.admin_key = admin_.public_key();
    genesis_.params.view_change_timeout_ms = 2000;
    for (uint32_t i = 0; i < kN; ++i) {
      auto key = crypto::PrivateKey::Generate();
      ASSERT_TRUE(key.ok());
      keys_.push_back(*key);
      genesis_.validators.push_back(
          {"v" + std::to_string(i), key->public_key(), "127.0.0.1:" + std::to_string(FreePort())});
    }
    ASSERT_TRUE(genesis_.Validate().ok());
    validators_.resize(kN);
    for (uint32_t i = 0; i < kN; ++i) ASSERT_TRUE(Launch(i).ok());
  }

  void TearDown() override {
    for (auto& v : validators_) {
      if (v) v->Stop();
    }
    validators_.clear();
  }

  ValidatorConfig ConfigOf(uint32_t i) {
    ValidatorConfig config;
    config.listen = genesis_.validators[i].endpoint;
    config.http_listen = "127.0.0.1:0";
    config.data_dir = dir_.Sub("v" + std::to_string(i));
    config.identity_key = "unused";
    config.genesis = "unused";
    config.peer_reconnect_min_ms = 20;
    config.peer_reconnect_max_ms = 200;
    config.drain_timeout_ms = 1000;
    return config;
  }

  Status Launch(uint32_t i) {
    auto v = Validator::Start(ConfigOf(i), genesis_, keys_[i]);
    if (!v.ok()) return v.status();
    validators_[i] = std::move(v).value();
    return Status::Ok();
  }

  std::unique_ptr<v1::ChainService::Stub> Stub(uint32_t i) {
    auto channel = net::MakeChannel(genesis_.validators[i].endpoint, net::TransportConfig{});
    EXPECT_TRUE(channel.ok());
    return v1::ChainService::NewStub(*channel);
  }

  ledger::Tx RegisterTx(const std::string& name, uint64_t nonce = 0) {
    auto node = crypto::PrivateKey::Generate();
    EXPECT_TRUE(node.ok());
    ledger::RegisterNode body{node->public_key(), ledger::NodeRole::kEdge, name, "127.0.0.1:9"};
    return ledger::MakeTx(kChain, ledger::TxType::kRegisterNode, admin_,
                          nonce ? nonce : ledger::FreshNonce(), body.Encode());
  }

  grpc::Status Submit(uint32_t i, const Bytes& tx, v1::SubmitTxResponse* response,
                      bool no_wait = false, uint32_t timeout_ms = 0) {
    v1::SubmitTxRequest request;
    request.set_tx(AsString(tx));
    request.set_no_wait(no_wait);
    request.set_timeout_ms(timeout_ms);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    return Stub(i)->SubmitTx(&ctx, request, response);
  }

  uint64_t Height(uint32_t i) { return validators_[i]->node()->store().Head().height; }

  // Submits `tx` through validator 0 and waits for its commit; its height (0 on failure).
  uint64_t Commit(const ledger::Tx& tx) {
    v1::SubmitTxResponse response;
    grpc::Status status = Submit(0, tx.Encode(), &response);
    EXPECT_TRUE(status.ok()) << ledger::TxTypeName(tx.type) << ": " << status.error_message();
    return response.height();
  }

  // A fresh key registered as an edge.
  crypto::PrivateKey RegisterEdge(const std::string& name) {
    auto key = crypto::PrivateKey::Generate();
    EXPECT_TRUE(key.ok());
    ledger::RegisterNode body{key->public_key(), ledger::NodeRole::kEdge, name, ""};
    Commit(ledger::MakeTx(kChain, ledger::TxType::kRegisterNode, admin_, ledger::FreshNonce(),
                          body.Encode()));
    return *key;
  }

  static std::string ExpertCid(char c = 'e') { return "sha256-tree:" + std::string(64, c); }

  // Publishes the expert that results name (a result for an unpublished one is rejected).
  void PublishExpert() {
    ledger::PublishExpert body{ExpertCid(), "moe/expert-0", "swiglu", 4096};
    Commit(ledger::MakeTx(kChain, ledger::TxType::kPublishExpert, admin_, ledger::FreshNonce(),
                          body.Encode()));
  }

  // A forward ExpertResult signed by `edge`.
  static ledger::Tx ResultTx(const crypto::PrivateKey& edge, const std::string& job, uint64_t step,
                             const std::string& expert_cid = ExpertCid()) {
    ledger::ExpertResultBody body;
    body.job = job;
    body.step = step;
    body.expert_cid = expert_cid;
    body.input_cid = "sha256-tree:" + std::string(64, 'a');
    body.output_cid = "sha256-tree:" + std::string(64, 'b');
    body.rows = 8;
    body.dtype = ledger::ComputeDType::kBF16;
    body.device = "cuda:0";
    return ledger::MakeTx(kChain, ledger::TxType::kExpertResult, edge, ledger::FreshNonce(),
                          body.Encode());
  }

  // Validator `i`'s vote on the result `result` (an ExpertResult tx).
  ledger::Tx VoteTx(uint32_t i, const ledger::Tx& result,
                    ledger::RejectReason reason = ledger::RejectReason::kNone,
                    const std::string& detail = "") {
    ledger::VoteBody body;
    body.edge = result.signer;
    body.result_nonce = result.nonce;
    body.verdict = reason == ledger::RejectReason::kNone ? ledger::Verdict::kAccepted
                                                         : ledger::Verdict::kRejected;
    body.reason = reason;
    body.detail = detail;
    return ledger::MakeTx(kChain, ledger::TxType::kVote, keys_[i], ledger::FreshNonce(),
                          body.Encode());
  }

  // Votes of validators `voters` on `result`, each waited for; the height of the last.
  uint64_t VoteAll(const std::vector<uint32_t>& voters, const ledger::Tx& result,
                   ledger::RejectReason reason = ledger::RejectReason::kNone,
                   const std::string& detail = "") {
    uint64_t height = 0;
    for (uint32_t i : voters) height = Commit(VoteTx(i, result, reason, detail));
    return height;
  }

  // The whole stream of a WatchVerdicts request that ends (to_height set), from validator `i`.
  grpc::Status ReadVerdicts(uint32_t i, const v1::WatchVerdictsRequest& request,
                            std::vector<v1::VerdictInfo>* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    auto stub = Stub(i);
    auto reader = stub->WatchVerdicts(&ctx, request);
    v1::VerdictInfo info;
    while (reader->Read(&info)) out->push_back(info);
    return reader->Finish();
  }

  // Every validator reaches `height`.
  bool AllReach(uint64_t height) {
    return WaitFor([&] {
      for (auto& v : validators_) {
        if (v && v->node()->store().Head().height < height) return false;
      }
      return true;
    });
  }

  testutil::TempDir dir_;
  crypto::PrivateKey admin_;
  std::vector<crypto::PrivateKey> keys_;
  ledger::Genesis genesis_;
  std::vector<std::unique_ptr<Validator>> validators_;
};

TEST_F(ClusterTest, SubmitTxCommitsWithAProofThatVerifies) {
  ledger::Tx tx = RegisterTx("edge-a");
  Bytes bytes = tx.Encode();
  v1::SubmitTxResponse response;
  grpc::Status status = Submit(1, bytes, &response);  // a backup: relayed to the primary
  ASSERT_TRUE(status.ok()) << status.error_message();
  const pbft::TxId id = tx.Id();
  EXPECT_EQ(response.tx_id(), AsString(Bytes(id.begin(), id.end())));
  ASSERT_GE(response.height(), 1u);
  const v1::TxInfo& info = response.committed();
  EXPECT_EQ(info.tx(), AsString(bytes));
  auto proof = ledger::TxProof::Decode(AsBytes(info.proof()));
  auto header = ledger::BlockHeader::Decode(AsBytes(info.header()));
  auto cert = pbft::CommitCertificate::Decode(AsBytes(info.certificate()), kN);
  ASSERT_TRUE(proof.ok() && header.ok() && cert.ok());
  Status verified = ledger::VerifyTxInclusion(bytes, *proof, *header, *cert, genesis_.Validators());
  EXPECT_TRUE(verified.ok()) << verified.ToString();

  // Every validator commits the same block; any of them answers GetTx and lists the node.
  ASSERT_TRUE(AllReach(response.height()));
  for (uint32_t i = 0; i < kN; ++i) {
    v1::GetTxRequest get;
    get.set_tx_id(response.tx_id());
    v1::TxInfo other;
    grpc::ClientContext ctx;
    ASSERT_TRUE(Stub(i)->GetTx(&ctx, get, &other).ok());
    EXPECT_EQ(other.header(), info.header());
  }
  v1::ListNodesRequest list;
  v1::ListNodesResponse nodes;
  grpc::ClientContext list_ctx;
  ASSERT_TRUE(Stub(2)->ListNodes(&list_ctx, list, &nodes).ok());
  EXPECT_EQ(nodes.nodes_size(), static_cast<int>(kN + 1));  // the validators and edge-a
  int edges = 0;
  for (const auto& n : nodes.nodes()) edges += n.role() == "edge" && n.name() == "edge-a";
  EXPECT_EQ(edges, 1);

  v1::HeadInfo head;
  grpc::ClientContext head_ctx;
  ASSERT_TRUE(Stub(3)->GetHead(&head_ctx, v1::GetHeadRequest(), &head).ok());
  EXPECT_EQ(head.chain_id(), kChain);
  EXPECT_EQ(head.validator_id(), 3u);
  EXPECT_GE(head.height(), response.height());
  auto digest = genesis_.Hash();
  EXPECT_EQ(head.genesis_digest(), AsString(Bytes(digest.begin(), digest.end())));
}

TEST_F(ClusterTest, ManyTransactionsAreBatchedIntoFewBlocks) {
  constexpr int kTxs = 60;
  std::vector<ledger::Tx> txs;
  for (int i = 0; i < kTxs; ++i) txs.push_back(RegisterTx("edge-" + std::to_string(i)));
  std::vector<std::future<grpc::Status>> done;
  for (int i = 0; i < kTxs; ++i) {
    done.push_back(std::async(std::launch::async, [this, &txs, i] {
      v1::SubmitTxResponse response;
      return Submit(static_cast<uint32_t>(i % kN), txs[i].Encode(), &response);
    }));
  }
  for (auto& f : done) {
    grpc::Status s = f.get();
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  uint64_t height = Height(0);
  EXPECT_LT(height, static_cast<uint64_t>(kTxs)) << "expected several transactions per block";
  ASSERT_TRUE(AllReach(height));
  auto snapshot = validators_[0]->node()->Snapshot();
  EXPECT_EQ(snapshot.pool_size, 0u);
  std::string metrics = validators_[0]->metrics()->Render();
  EXPECT_THAT(metrics, HasSubstr("trustmoe_validator_committed_txs_total " + std::to_string(kTxs)));
  EXPECT_THAT(metrics, HasSubstr("trustmoe_validator_commit_latency_seconds_count"));
  EXPECT_THAT(metrics, HasSubstr("trustmoe_validator_rejected_messages_total{reason="));
}

TEST_F(ClusterTest, ARetryWhileWaitingGetsTheSameAnswer) {
  Bytes tx = RegisterTx("twice").Encode();
  auto first = std::async(std::launch::async, [&] {
    v1::SubmitTxResponse r;
    grpc::Status s = Submit(1, tx, &r);
    return std::make_pair(s.error_code(), r.height());
  });
  auto second = std::async(std::launch::async, [&] {
    v1::SubmitTxResponse r;
    grpc::Status s = Submit(1, tx, &r);
    return std::make_pair(s.error_code(), r.height());
  });
  auto a = first.get();
  auto b = second.get();
  // Both wait for the one commit, unless the first committed before the second arrived.
  if (a.first == grpc::StatusCode::ALREADY_EXISTS) std::swap(a, b);
  EXPECT_EQ(a.first, grpc::StatusCode::OK);
  EXPECT_GE(a.second, 1u);
  if (b.first == grpc::StatusCode::OK) {
    EXPECT_EQ(b.second, a.second);
  }
  EXPECT_TRUE(b.first == grpc::StatusCode::OK || b.first == grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_TRUE(validators_[1]->Health().healthy) << validators_[1]->Health().detail;
}

TEST_F(ClusterTest, AWaitingSubmitOfAPendingTxGetsItsCommit) {
  // Without a quorum the transaction stays pending.
  validators_[2]->Stop();
  validators_[3]->Stop();
  const Bytes tx = RegisterTx("pending").Encode();
  v1::SubmitTxResponse admitted;
  grpc::Status status = Submit(1, tx, &admitted, /*no_wait=*/true);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(admitted.height(), 0u);
  // Pending on validator 1 (its client's) and on validator 0 (relayed to it).
  ASSERT_TRUE(WaitFor([&] { return validators_[0]->node()->Snapshot().pool_size == 1; }));
  auto wait_on = [&](uint32_t i) {
    return std::async(std::launch::async, [this, i, &tx] {
      v1::SubmitTxResponse r;
      grpc::Status s = Submit(i, tx, &r, /*no_wait=*/false, /*timeout_ms=*/40000);
      return std::make_pair(s, r);
    });
  };
  auto on_backup = wait_on(1);
  auto on_primary = wait_on(0);
  ASSERT_TRUE(WaitFor([&] {
    return validators_[0]->node()->Snapshot().waiters == 1 &&
           validators_[1]->node()->Snapshot().waiters == 1;
  })) << "a waiting SubmitTx of a pending transaction must wait, not fail";

  // The quorum is back: the transaction commits and both calls get it with its proof.
  for (uint32_t i : {2u, 3u}) {
    validators_[i].reset();
    ASSERT_TRUE(Launch(i).ok());
  }
  for (auto* call : {&on_backup, &on_primary}) {
    auto [s, response] = call->get();
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_GE(response.height(), 1u);
    const v1::TxInfo& info = response.committed();
    EXPECT_EQ(info.tx(), AsString(tx));
    auto proof = ledger::TxProof::Decode(AsBytes(info.proof()));
    auto header = ledger::BlockHeader::Decode(AsBytes(info.header()));
    auto cert = pbft::CommitCertificate::Decode(AsBytes(info.certificate()), kN);
    ASSERT_TRUE(proof.ok() && header.ok() && cert.ok());
    EXPECT_EQ(header->height, response.height());
    Status verified = ledger::VerifyTxInclusion(tx, *proof, *header, *cert, genesis_.Validators());
    EXPECT_TRUE(verified.ok()) << verified.ToString();
  }
}

TEST_F(ClusterTest, WatchBlocksStreamsCommittedAndNewBlocks) {
  v1::SubmitTxResponse first;
  ASSERT_TRUE(Submit(0, RegisterTx("w1").Encode(), &first).ok());
  grpc::ClientContext ctx;
  v1::WatchBlocksRequest request;
  request.set_from_height(1);
  auto reader = Stub(2)->WatchBlocks(&ctx, request);
  v1::BlockInfo block;
  ASSERT_TRUE(reader->Read(&block));
  EXPECT_EQ(block.height(), 1u);
  // A block committed after the stream started arrives too.
  v1::SubmitTxResponse second;
  ASSERT_TRUE(Submit(3, RegisterTx("w2").Encode(), &second).ok());
  uint64_t last = block.height();
  while (last < second.height() && reader->Read(&block)) {
    EXPECT_EQ(block.height(), last + 1);
    last = block.height();
  }
  EXPECT_EQ(last, second.height());
  ctx.TryCancel();
  reader->Finish();
}

std::string KeyBytes(const crypto::PublicKey& key) {
  return std::string(key.bytes().begin(), key.bytes().end());
}

TEST_F(ClusterTest, WatchVerdictsReplaysThenFollowsVerdicts) {
  PublishExpert();
  const crypto::PrivateKey edge = RegisterEdge("edge-v");
  const ledger::Tx r1 = ResultTx(edge, "job-a", 1);
  const ledger::Tx r2 = ResultTx(edge, "job-a", 2);
  const ledger::Tx r3 = ResultTx(edge, "job-a", 3);
  const uint64_t r1_height = Commit(r1);
  Commit(r2);
  Commit(r3);
  const uint64_t accepted_at = VoteAll({0, 1, 2}, r1);
  ASSERT_GT(accepted_at, r1_height);

  // From block 1 (from_height 0): the verdict committed before the stream opened.
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto stub = Stub(1);
  auto reader = stub->WatchVerdicts(&ctx, v1::WatchVerdictsRequest());
  v1::VerdictInfo info;
  ASSERT_TRUE(reader->Read(&info));
  EXPECT_EQ(info.edge(), KeyBytes(edge.public_key()));
  EXPECT_EQ(info.nonce(), r1.nonce);
  EXPECT_EQ(info.job(), "job-a");
  EXPECT_EQ(info.step(), 1u);
  EXPECT_EQ(info.kind(), "forward");
  EXPECT_EQ(info.output_cid(), "sha256-tree:" + std::string(64, 'b'));
  EXPECT_EQ(info.rows(), 8u);
  EXPECT_EQ(info.dtype(), "bf16");
  EXPECT_EQ(info.device(), "cuda:0");
  EXPECT_EQ(info.status(), "accepted");
  EXPECT_EQ(info.reason(), "");
  EXPECT_EQ(info.height(), r1_height);
  EXPECT_EQ(info.verdict_height(), accepted_at);
  ASSERT_EQ(info.votes_size(), 3);
  for (int v = 0; v < 3; ++v) {
    EXPECT_EQ(info.votes(v).validator_id(), static_cast<uint32_t>(v));
    EXPECT_EQ(info.votes(v).verdict(), "accepted");
    EXPECT_EQ(info.votes(v).reason(), "none");
  }
  EXPECT_EQ(info.votes(2).height(), accepted_at);

  // Live: a late vote against r1 is no new verdict. r2's three votes go in together (one
  // block may hold several of them) and make one verdict; r3's follows it.
  Commit(VoteTx(3, r1, ledger::RejectReason::kMismatch, "late"));
  std::vector<std::future<grpc::Status>> votes;
  for (uint32_t i : {1u, 2u, 3u}) {
    votes.push_back(std::async(std::launch::async, [this, i, &r2] {
      v1::SubmitTxResponse response;
      return Submit(0, VoteTx(i, r2, ledger::RejectReason::kMismatch, "row 0: error 0.5").Encode(),
                    &response);
    }));
  }
  for (auto& v : votes) ASSERT_TRUE(v.get().ok());
  const uint64_t r3_verdict = VoteAll({0, 2, 3}, r3);
  ASSERT_TRUE(reader->Read(&info));
  EXPECT_EQ(info.nonce(), r2.nonce);
  EXPECT_EQ(info.status(), "rejected");
  EXPECT_EQ(info.reason(), "mismatch: row 0: error 0.5");
  ASSERT_EQ(info.votes_size(), 3);
  EXPECT_EQ(info.votes(0).validator_id(), 1u);
  EXPECT_EQ(info.votes(0).reason(), "mismatch");
  EXPECT_EQ(info.votes(0).detail(), "row 0: error 0.5");
  ASSERT_TRUE(reader->Read(&info));
  EXPECT_EQ(info.nonce(), r3.nonce) << "one verdict per result, however many votes a block holds";
  EXPECT_EQ(info.verdict_height(), r3_verdict);
  EXPECT_EQ(info.status(), "accepted");
  ctx.TryCancel();
  reader->Finish();

  // The late vote is recorded with the verdict it contradicts.
  std::vector<v1::VerdictInfo> replayed;
  v1::WatchVerdictsRequest request;
  request.set_to_height(accepted_at);
  ASSERT_TRUE(ReadVerdicts(2, request, &replayed).ok());
  ASSERT_EQ(replayed.size(), 1u);
  ASSERT_EQ(replayed[0].votes_size(), 4);
  EXPECT_EQ(replayed[0].votes(3).verdict(), "rejected");
  EXPECT_EQ(replayed[0].votes(3).detail(), "late");
}

TEST_F(ClusterTest, WatchVerdictsFiltersByJobEdgeAndHeights) {
  PublishExpert();
  const crypto::PrivateKey edge_a = RegisterEdge("edge-a");
  const crypto::PrivateKey edge_b = RegisterEdge("edge-b");
  const crypto::PrivateKey edge_c = RegisterEdge("edge-c");
  const ledger::Tx a1 = ResultTx(edge_a, "job-x", 1);
  const ledger::Tx b1 = ResultTx(edge_b, "job-y", 1);
  const ledger::Tx a2 = ResultTx(edge_a, "job-y", 2);
  const ledger::Tx pending = ResultTx(edge_b, "job-x", 2);
  for (const ledger::Tx* tx : {&a1, &b1, &a2, &pending}) Commit(*tx);
  const uint64_t a1_at = VoteAll({0, 1, 2}, a1);
  const uint64_t b1_at = VoteAll({1, 2, 3}, b1);
  const uint64_t a2_at = VoteAll({0, 1, 3}, a2, ledger::RejectReason::kWrongShape, "rows");
  Commit(VoteTx(0, pending));  // one vote: no verdict
  // Rejected as it is ordered, without votes: its expert is not published.
  const ledger::Tx c1 = ResultTx(edge_c, "job-x", 3, ExpertCid('f'));
  const uint64_t c1_at = Commit(c1);
  const uint64_t head = Height(0);

  auto nonces = [&](const std::string& job, const crypto::PrivateKey* edge, uint64_t from,
                    uint64_t to) {
    v1::WatchVerdictsRequest request;
    request.set_job(job);
    if (edge) request.set_edge(KeyBytes(edge->public_key()));
    request.set_from_height(from);
    request.set_to_height(to);
    std::vector<v1::VerdictInfo> got;
    grpc::Status status = ReadVerdicts(3, request, &got);
    EXPECT_TRUE(status.ok()) << status.error_message();
    std::vector<uint64_t> out;
    for (const auto& v : got) out.push_back(v.nonce());
    return out;
  };
  using V = std::vector<uint64_t>;
  EXPECT_EQ(nonces("", nullptr, 0, head), (V{a1.nonce, b1.nonce, a2.nonce, c1.nonce}));
  EXPECT_EQ(nonces("job-y", nullptr, 0, head), (V{b1.nonce, a2.nonce}));
  EXPECT_EQ(nonces("", &edge_a, 0, head), (V{a1.nonce, a2.nonce}));
  EXPECT_EQ(nonces("job-y", &edge_a, 0, head), (V{a2.nonce}));
  EXPECT_EQ(nonces("job-x", &edge_b, 0, head), V{});
  EXPECT_EQ(nonces("", nullptr, a1_at + 1, head), (V{b1.nonce, a2.nonce, c1.nonce}));
  EXPECT_EQ(nonces("", nullptr, b1_at, b1_at), (V{b1.nonce}));
  EXPECT_EQ(nonces("", nullptr, a2_at + 1, head), (V{c1.nonce}));
  EXPECT_EQ(nonces("", nullptr, a2_at + 1, c1_at - 1), V{});
  EXPECT_EQ(nonces("no-such-job", nullptr, 1, head), V{});

  v1::WatchVerdictsRequest request;
  request.set_edge(KeyBytes(edge_c.public_key()));
  request.set_to_height(head);
  std::vector<v1::VerdictInfo> got;
  ASSERT_TRUE(ReadVerdicts(0, request, &got).ok());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].status(), "rejected");
  EXPECT_EQ(got[0].height(), c1_at);
  EXPECT_EQ(got[0].verdict_height(), c1_at);
  EXPECT_THAT(got[0].reason(), HasSubstr("expert-not-published"));
  EXPECT_EQ(got[0].votes_size(), 0);
}

TEST_F(ClusterTest, WatchVerdictsRefusesBadRequestsAndEndsAtShutdown) {
  const uint64_t height = Commit(RegisterTx("first"));
  struct Case {
    std::string name;
    v1::WatchVerdictsRequest request;
    std::string message;
  };
  std::vector<Case> cases(4);
  cases[0].name = "short edge";
  cases[0].request.set_edge(std::string(31, 'k'));
  cases[0].message = "edge";
  cases[1].name = "long edge";
  cases[1].request.set_edge(std::string(33, 'k'));
  cases[1].message = "edge";
  cases[2].name = "long job";
  cases[2].request.set_job(std::string(ledger::kJobBytesMax + 1, 'j'));
  cases[2].message = "job";
  cases[3].name = "to below from";
  cases[3].request.set_from_height(5);
  cases[3].request.set_to_height(2);
  cases[3].message = "to_height";
  for (const Case& c : cases) {
    std::vector<v1::VerdictInfo> got;
    grpc::Status status = ReadVerdicts(1, c.request, &got);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.name;
    EXPECT_THAT(status.error_message(), HasSubstr(c.message)) << c.name;
    EXPECT_TRUE(got.empty()) << c.name;
  }
  EXPECT_THAT(validators_[1]->metrics()->Render(), HasSubstr("rpc=\"WatchVerdicts\""));
  // The longest job name is fine.
  v1::WatchVerdictsRequest longest;
  longest.set_job(std::string(ledger::kJobBytesMax, 'j'));
  longest.set_to_height(height);
  std::vector<v1::VerdictInfo> got;
  EXPECT_TRUE(ReadVerdicts(1, longest, &got).ok());

  // A following stream ends OK when its validator stops.
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto stub = Stub(2);
  auto reader = stub->WatchVerdicts(&ctx, v1::WatchVerdictsRequest());
  ASSERT_TRUE(WaitFor([&] {
    return validators_[2]->metrics()->Render().find("trustmoe_validator_watch_streams 1") !=
           std::string::npos;
  }));
  validators_[2]->Stop();
  v1::VerdictInfo info;
  EXPECT_FALSE(reader->Read(&info));
  grpc::Status ended = reader->Finish();
  EXPECT_TRUE(ended.ok()) << ended.error_message();
}

TEST_F(ClusterTest, HostileTransactionsAreRefusedAndNothingIsCommitted) {
  v1::SubmitTxResponse ok;
  ASSERT_TRUE(Submit(0, RegisterTx("before").Encode(), &ok).ok());
  ledger::Tx committed = RegisterTx("committed");
  ASSERT_TRUE(Submit(0, committed.Encode(), &ok).ok());
  ASSERT_TRUE(AllReach(ok.height()));
  const uint64_t height = ok.height();

  struct Case {
    std::string name;
    Bytes tx;
    grpc::StatusCode code;
  };
  std::vector<Case> cases;
  cases.push_back({"empty", Bytes(), grpc::StatusCode::INVALID_ARGUMENT});
  cases.push_back(
      {"malformed", AsBytesOf("not a transaction at all"), grpc::StatusCode::INVALID_ARGUMENT});
  ledger::Tx bad_sig = RegisterTx("bad-sig");
  bad_sig.signature[3] ^= 0x40;
  cases.push_back({"wrong signature", bad_sig.Encode(), grpc::StatusCode::UNAUTHENTICATED});
  ledger::Tx other_chain = ledger::MakeTx("other-chain", ledger::TxType::kRegisterNode, admin_,
                                          ledger::FreshNonce(), RegisterTx("x").body);
  cases.push_back({"other chain", other_chain.Encode(), grpc::StatusCode::UNAUTHENTICATED});
  ledger::Tx unknown = ledger::MakeTx(kChain, static_cast<ledger::TxType>(99), admin_,
                                      ledger::FreshNonce(), Bytes{1, 2, 3});
  cases.push_back({"unknown type", unknown.Encode(), grpc::StatusCode::INVALID_ARGUMENT});
  cases.push_back({"oversized", Bytes(genesis_.params.tx_bytes_max + 1, 0x5a),
                   grpc::StatusCode::INVALID_ARGUMENT});
  ledger::Tx huge_body =
      ledger::MakeTx(kChain, ledger::TxType::kRegisterNode, admin_, ledger::FreshNonce(),
                     Bytes(genesis_.params.tx_bytes_max, 1));
  cases.push_back({"oversized body", huge_body.Encode(), grpc::StatusCode::INVALID_ARGUMENT});
  cases.push_back({"replay", committed.Encode(), grpc::StatusCode::ALREADY_EXISTS});
  ledger::Tx same_nonce = RegisterTx("same-nonce", committed.nonce);
  cases.push_back({"nonce reuse", same_nonce.Encode(), grpc::StatusCode::ALREADY_EXISTS});
  auto stranger = crypto::PrivateKey::Generate();
  ASSERT_TRUE(stranger.ok());
  ledger::Tx unauthorized = ledger::MakeTx(kChain, ledger::TxType::kRegisterNode, *stranger,
                                           ledger::FreshNonce(), RegisterTx("u").body);
  cases.push_back({"not the admin", unauthorized.Encode(), grpc::StatusCode::PERMISSION_DENIED});

  for (const Case& c : cases) {
    for (bool no_wait : {false, true}) {
      v1::SubmitTxResponse response;
      grpc::Status status = Submit(c.name == "replay" ? 2 : 1, c.tx, &response, no_wait);
      EXPECT_EQ(status.error_code(), c.code)
          << c.name << (no_wait ? " (no_wait)" : "") << ": " << status.error_message();
      EXPECT_FALSE(status.error_message().empty()) << c.name;
    }
  }

  // Garbage on the peer stream: counted by the replica as malformed, the stream stays usable.
  auto channel = net::MakeChannel(genesis_.validators[0].endpoint, net::TransportConfig{});
  ASSERT_TRUE(channel.ok());
  auto peer_stub = v1::ValidatorPeerService::NewStub(*channel);
  {
    grpc::ClientContext ctx;
    v1::PeerAck ack;
    auto writer = peer_stub->Deliver(&ctx, &ack);
    v1::PeerMessage message;
    for (const std::string& garbage :
         {std::string("garbage"), std::string(100000, '\xff'), std::string()}) {
      message.set_envelope(garbage);
      ASSERT_TRUE(writer->Write(message));
    }
    writer->WritesDone();
    EXPECT_TRUE(writer->Finish().ok());
  }
  EXPECT_TRUE(WaitFor([&] {
    return validators_[0]->node()->Snapshot().stats.Rejected(pbft::Reject::kMalformed) >= 2;
  }));
  EXPECT_EQ(validators_[0]->peer_service()->rejected("empty"), 1u);

  // Still serving: the next transaction is the only one in the next block.
  v1::SubmitTxResponse after;
  ASSERT_TRUE(Submit(0, RegisterTx("after").Encode(), &after).ok());
  EXPECT_EQ(after.height(), height + 1);
  v1::GetBlockRequest get;
  get.set_height(after.height());
  v1::BlockInfo block;
  grpc::ClientContext ctx;
  ASSERT_TRUE(Stub(0)->GetBlock(&ctx, get, &block).ok());
  auto decoded = ledger::Block::Decode(AsBytes(block.block()), {});
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->txs.size(), 1u);
}

TEST_F(ClusterTest, HostileQueriesAreRefused) {
  auto stub = Stub(0);
  {
    grpc::ClientContext ctx;
    v1::GetTxRequest request;
    request.set_tx_id("short");
    v1::TxInfo info;
    EXPECT_EQ(stub->GetTx(&ctx, request, &info).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    v1::GetTxRequest request;
    request.set_tx_id(std::string(32, 'x'));
    v1::TxInfo info;
    EXPECT_EQ(stub->GetTx(&ctx, request, &info).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  for (uint64_t height : {0ull, 1000000ull}) {
    grpc::ClientContext ctx;
    v1::GetBlockRequest request;
    request.set_height(height);
    v1::BlockInfo info;
    EXPECT_EQ(stub->GetBlock(&ctx, request, &info).error_code(),
              height == 0 ? grpc::StatusCode::INVALID_ARGUMENT : grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    v1::ScanStateRequest request;
    request.set_limit(1000000);
    v1::ScanStateResponse response;
    EXPECT_EQ(stub->ScanState(&ctx, request, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    v1::ScanStateRequest request;
    request.set_prefix("node/");
    v1::ScanStateResponse response;
    ASSERT_TRUE(stub->ScanState(&ctx, request, &response).ok());
    EXPECT_EQ(response.entries_size(), static_cast<int>(kN));
  }
  {
    grpc::ClientContext ctx;
    v1::GenesisInfo info;
    ASSERT_TRUE(stub->GetGenesis(&ctx, v1::GetGenesisRequest(), &info).ok());
    auto parsed = ledger::Genesis::FromJson(info.json());
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(parsed->Hash(), genesis_.Hash());
  }
}

TEST_F(ClusterTest, OversizedPeerEnvelopesAreRefusedByTheTransport) {
  // A peer service with a small limit in front of validator 0's node.
  MetricsRegistry metrics;
  PeerService service(validators_[0]->node(), 1024, &metrics);
  net::TransportConfig transport;
  auto server = net::StartServer("127.0.0.1:0", transport, {&service});
  ASSERT_TRUE(server.ok());
  auto channel = net::MakeChannel("127.0.0.1:" + std::to_string(server->bound_port), transport);
  ASSERT_TRUE(channel.ok());
  auto stub = v1::ValidatorPeerService::NewStub(*channel);
  {
    grpc::ClientContext ctx;
    v1::PeerAck ack;
    auto writer = stub->Deliver(&ctx, &ack);
    v1::PeerMessage message;
    message.set_envelope(std::string(2048, 'a'));
    ASSERT_TRUE(writer->Write(message));
    message.set_envelope(std::string(100, 'b'));
    ASSERT_TRUE(writer->Write(message));
    writer->WritesDone();
    EXPECT_TRUE(writer->Finish().ok());
  }
  EXPECT_EQ(service.rejected("oversized"), 1u);
  service.Shutdown();
  server->server->Shutdown();
}

TEST_F(ClusterTest, WaitingCallsEndAtTheirDeadlineAndAtShutdown) {
  // Without a quorum nothing commits.
  validators_[2]->Stop();
  validators_[3]->Stop();
  v1::SubmitTxResponse response;
  auto start = std::chrono::steady_clock::now();
  grpc::Status status = Submit(0, RegisterTx("late").Encode(), &response, false, 300);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));

  auto waiting = std::async(std::launch::async, [&] {
    v1::SubmitTxResponse r;
    return Submit(0, RegisterTx("stopped").Encode(), &r, false, 60000);
  });
  ASSERT_TRUE(WaitFor([&] { return validators_[0]->node()->Snapshot().waiters == 1; }));
  validators_[0]->Stop();
  grpc::Status stopped = waiting.get();
  EXPECT_EQ(stopped.error_code(), grpc::StatusCode::UNAVAILABLE) << stopped.error_message();

  // The ledger reopens: a validator restarts from its data directory.
  validators_[0].reset();
  ASSERT_TRUE(Launch(0).ok());
  EXPECT_EQ(Height(0), 0u);
}

}  // namespace
}  // namespace trustmoe::validator
