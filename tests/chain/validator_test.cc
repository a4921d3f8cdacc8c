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
#include "chain/ledger/tx.h"
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
