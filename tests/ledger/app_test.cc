// Genesis files, transactions, state execution and the PBFT application on real RocksDB
// ledgers, driven by four real replicas over an in-process network.
#include <gtest/gtest.h>

#include <rocksdb/db.h>

#include <deque>
#include <filesystem>
#include <map>
#include <memory>

#include "chain/ledger/app.h"
#include "chain/ledger/result.h"
#include "chain/ledger/genesis.h"
#include "chain/ledger/ledger_store.h"
#include "chain/ledger/state.h"
#include "chain/ledger/tx.h"
#include "chain/pbft/replica.h"
#include "tests/ledger/ledger_fixture.h"

namespace trustmoe::ledger {
namespace {

using testing::KeyFromByte;
using testing::MapState;
using testing::Validators;

constexpr char kChain[] = "test-chain";

Genesis MakeGenesis(const Validators& v, const crypto::PrivateKey& admin) {
  Genesis g;
  g.chain_id = kChain;
  g.created_unix_ms = 1700000000000;
  g.f = 1;
  for (size_t i = 0; i < v.keys.size(); ++i) {
    g.validators.push_back({"v" + std::to_string(i), v.keys[i].public_key(),
                            "127.0.0.1:" + std::to_string(7100 + i)});
  }
  g.admin_key = admin.public_key();
  return g;
}

class TempDir {
 public:
  TempDir() {
    path_ = std::filesystem::temp_directory_path() /
            ("trustmoe-app-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string path() const { return path_.string(); }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

// ---- Genesis ----

TEST(GenesisTest, JsonRoundTripKeepsTheDigest) {
  Validators v;
  Genesis g = MakeGenesis(v, KeyFromByte(9));
  ASSERT_TRUE(g.Validate().ok()) << g.Validate().ToString();
  auto back = Genesis::FromJson(g.ToJson());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->Hash(), g.Hash());
  EXPECT_EQ(back->validators[2].endpoint, "127.0.0.1:7102");
  // Whitespace and key order are not part of the digest.
  std::string compact = g.ToJson();
  std::erase(compact, '\n');
  std::erase(compact, ' ');
  auto compacted = Genesis::FromJson(compact);
  ASSERT_TRUE(compacted.ok()) << compacted.status().ToString();
  EXPECT_EQ(compacted->Hash(), g.Hash());
  // Any field change changes it.
  Genesis other = g;
  other.params.strike_threshold += 1;
  EXPECT_NE(other.Hash(), g.Hash());
}

TEST(GenesisTest, RejectsBadFilesWithTheField) {
  Validators v;
  Genesis g = MakeGenesis(v, KeyFromByte(9));
  std::string good = g.ToJson();
  auto expect_error = [](std::string text, std::string fragment) {
    auto r = Genesis::FromJson(text);
    ASSERT_FALSE(r.ok()) << "accepted: " << text.substr(0, 200);
    EXPECT_NE(r.status().message().find(fragment), std::string::npos)
        << r.status().ToString() << " lacks '" << fragment << "'";
  };
  auto replace = [&](std::string from, std::string to) {
    std::string s = good;
    size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return s.replace(at, from.size(), to);
  };
  expect_error("{", "not valid JSON");
  expect_error("[]", "object");
  expect_error(replace("\"f\": 1", "\"f\": 2"), "3f + 1");
  expect_error(replace("\"f\": 1", "\"f\": \"one\""), "'f'");
  expect_error(replace("\"chain_id\": \"test-chain\"", "\"chain_id\": \"Bad Chain\""), "chain_id");
  expect_error(replace("\"chain_id\"", "\"chain_idd\""), "unknown field 'chain_idd'");
  expect_error(replace(g.validators[1].key.Hex(), g.validators[0].key.Hex()), "duplicate");
  expect_error(replace(g.admin_key.Hex(), "zz"), "admin_key");
  expect_error(replace("\"127.0.0.1:7101\"", "\"\""), "endpoint");
  expect_error(replace("\"watermark_window\": 32", "\"watermark_window\": 7"), "watermark");
  expect_error(replace("\"tx_bytes_max\": 65536", "\"tx_bytes_max\": -1"), "tx_bytes_max");
  expect_error(std::string(2 << 20, ' '), "1 MiB");
  EXPECT_EQ(Genesis::Load("/nonexistent/genesis.json").status().code(), StatusCode::kNotFound);
}

// ---- Transactions ----

TEST(TxTest, EncodeDecodeAndSignatureBoundToTheChain) {
  crypto::PrivateKey admin = KeyFromByte(9);
  RegisterNode body{KeyFromByte(20).public_key(), NodeRole::kEdge, "edge-a", "127.0.0.1:9000"};
  Tx tx = MakeTx(kChain, TxType::kRegisterNode, admin, 42, body.Encode());
  Bytes wire = tx.Encode();
  auto back = Tx::Decode(wire, 65536);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->Encode(), wire);
  EXPECT_TRUE(back->VerifySignature(kChain).ok());
  EXPECT_EQ(back->VerifySignature("other-chain").code(), StatusCode::kUnauthenticated);
  auto decoded_body = RegisterNode::Decode(back->body);
  ASSERT_TRUE(decoded_body.ok());
  EXPECT_EQ(decoded_body->name, "edge-a");

  // Every truncation fails to decode; a flipped byte in the body breaks the signature.
  for (size_t n = 0; n < wire.size(); n += 7) {
    EXPECT_FALSE(Tx::Decode(ByteSpan(wire.data(), n), 65536).ok()) << n;
  }
  Bytes trailing = wire;
  trailing.push_back(0);
  EXPECT_FALSE(Tx::Decode(trailing, 65536).ok());
  EXPECT_EQ(Tx::Decode(wire, 64).status().code(), StatusCode::kInvalidArgument);
  Tx flipped = tx;
  flipped.body.back() ^= 1;
  EXPECT_FALSE(flipped.VerifySignature(kChain).ok());
}

TEST(TxTest, BodiesRejectHostileFields) {
  EXPECT_FALSE(PublishExpert::Decode(PublishExpert{"not-a-cid", "n", "swiglu", 1}.Encode()).ok());
  std::string upper = "sha256-tree:" + std::string(64, 'A');
  EXPECT_FALSE(PublishExpert::Decode(PublishExpert{upper, "n", "swiglu", 1}.Encode()).ok());
  std::string cid = "sha256-tree:" + std::string(64, 'a');
  EXPECT_TRUE(PublishExpert::Decode(PublishExpert{cid, "n", "swiglu", 1}.Encode()).ok());
  EXPECT_FALSE(PublishExpert::Decode(PublishExpert{cid, "", "swiglu", 1}.Encode()).ok());
  EXPECT_FALSE(PublishModel::Decode(PublishModel{cid, std::string(500, 'x')}.Encode()).ok());
  Bytes garbage = {1, 2, 3};
  EXPECT_FALSE(RegisterNode::Decode(garbage).ok());
  EXPECT_TRUE(ParseNodeRole("edge").ok());
  EXPECT_FALSE(ParseNodeRole("king").ok());
}

// ---- Execution on state ----

class ExecuteTest : public ::testing::Test {
 protected:
  ExecuteTest() : admin_(KeyFromByte(9)), genesis_(MakeGenesis(validators_, admin_)) {
    for (auto& [k, v] : GenesisWrites(genesis_)) state_.map[k] = *v;
  }

  Status Run(const Tx& tx) {
    TxContext ctx{&genesis_, height_++, 1700000000000, 0};
    StateOverlay overlay(static_cast<const StateReader*>(&state_));
    Status s = ExecuteTx(ctx, registry_, tx.Encode(), &overlay);
    if (s.ok()) state_.Apply(overlay);
    else EXPECT_TRUE(overlay.writes().empty()) << "a rejected tx left writes";
    return s;
  }
  Tx Register(const crypto::PrivateKey& signer, const crypto::PrivateKey& node, NodeRole role,
              uint64_t nonce) {
    return MakeTx(kChain, TxType::kRegisterNode, signer, nonce,
                  RegisterNode{node.public_key(), role, "node", ""}.Encode());
  }

  Validators validators_;
  crypto::PrivateKey admin_;
  Genesis genesis_;
  TxRegistry registry_ = TxRegistry::Default();
  MapState state_;
  uint64_t height_ = 1;
};

TEST_F(ExecuteTest, RegisterNodeNeedsTheAdminAndNeverMakesAValidator) {
  crypto::PrivateKey edge = KeyFromByte(20), intruder = KeyFromByte(21);
  EXPECT_EQ(Run(Register(intruder, edge, NodeRole::kEdge, 1)).code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(Run(Register(admin_, edge, NodeRole::kValidator, 2)).code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(Run(Register(admin_, validators_.keys[1], NodeRole::kEdge, 3)).code(),
            StatusCode::kPermissionDenied);
  EXPECT_TRUE(Run(Register(admin_, edge, NodeRole::kEdge, 4)).ok());
  auto raw = state_.map.find(NodeKey(edge.public_key()));
  ASSERT_NE(raw, state_.map.end());
  auto record = NodeRecord::Decode(raw->second);
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->role, NodeRole::kEdge);
  EXPECT_EQ(record->registered_height, 4u);
  // A genesis validator is in the registry from the start.
  EXPECT_TRUE(state_.map.count(NodeKey(validators_.keys[0].public_key())));
}

TEST_F(ExecuteTest, ReplaysAndUnknownTypesAreRejected) {
  crypto::PrivateKey edge = KeyFromByte(20);
  Tx tx = Register(admin_, edge, NodeRole::kEdge, 7);
  EXPECT_TRUE(Run(tx).ok());
  EXPECT_EQ(Run(tx).code(), StatusCode::kAlreadyExists);
  // Same nonce, different body: still a replay of the nonce.
  EXPECT_EQ(Run(Register(admin_, edge, NodeRole::kGate, 7)).code(), StatusCode::kAlreadyExists);
  EXPECT_TRUE(Run(Register(admin_, edge, NodeRole::kGate, 8)).ok());
  Tx unknown = MakeTx(kChain, static_cast<TxType>(99), admin_, 9, Bytes{1});
  EXPECT_EQ(Run(unknown).code(), StatusCode::kInvalidArgument);
  Tx other_chain = MakeTx("other", TxType::kRegisterNode, admin_, 10,
                          RegisterNode{edge.public_key(), NodeRole::kEdge, "e", ""}.Encode());
  EXPECT_EQ(Run(other_chain).code(), StatusCode::kUnauthenticated);
}

TEST_F(ExecuteTest, PublishingNeedsAResearcherOrGateAndIsOncePerCid) {
  crypto::PrivateKey edge = KeyFromByte(20), researcher = KeyFromByte(22);
  ASSERT_TRUE(Run(Register(admin_, edge, NodeRole::kEdge, 1)).ok());
  ASSERT_TRUE(Run(Register(admin_, researcher, NodeRole::kResearcher, 2)).ok());
  std::string cid = "sha256-tree:" + std::string(64, 'b');
  auto publish = [&](const crypto::PrivateKey& k, uint64_t nonce) {
    return MakeTx(kChain, TxType::kPublishExpert, k, nonce,
                  PublishExpert{cid, "expert-0", "swiglu", 1024}.Encode());
  };
  EXPECT_EQ(Run(publish(KeyFromByte(23), 1)).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(Run(publish(edge, 1)).code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(Run(publish(researcher, 1)).ok());
  EXPECT_EQ(Run(publish(researcher, 2)).code(), StatusCode::kAlreadyExists);
  auto record = ExpertRecord::Decode(state_.map.at(ExpertKey(cid)));
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->publisher, researcher.public_key());
  EXPECT_EQ(record->arch, "swiglu");
  Tx model = MakeTx(kChain, TxType::kPublishModel, researcher, 3,
                    PublishModel{cid, "fmnist-moe"}.Encode());
  EXPECT_TRUE(Run(model).ok());
}

TEST_F(ExecuteTest, ExpertResultsAreRecordedPendingForRegisteredEdgesOnly) {
  crypto::PrivateKey edge = KeyFromByte(20), researcher = KeyFromByte(22), stranger = KeyFromByte(24);
  ASSERT_TRUE(Run(Register(admin_, edge, NodeRole::kEdge, 1)).ok());
  ASSERT_TRUE(Run(Register(admin_, researcher, NodeRole::kResearcher, 2)).ok());
  auto cid = [](char c) { return "sha256-tree:" + std::string(64, c); };
  ExpertResultBody body{CallKind::kForward, "job-1", 3, cid('a'), cid('b'), "", cid('c'), 16};
  auto result = [&](const crypto::PrivateKey& k, uint64_t nonce, const ExpertResultBody& b) {
    return MakeTx(kChain, TxType::kExpertResult, k, nonce, b.Encode());
  };
  ASSERT_TRUE(Run(MakeTx(kChain, TxType::kPublishExpert, researcher, 3,
                         PublishExpert{cid('a'), "e", "swiglu", 100}.Encode()))
                  .ok());
  EXPECT_EQ(Run(result(stranger, 1, body)).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(Run(result(researcher, 1, body)).code(), StatusCode::kPermissionDenied);
  ASSERT_TRUE(Run(result(edge, 77, body)).ok());
  EXPECT_EQ(Run(result(edge, 77, body)).code(), StatusCode::kAlreadyExists);  // replayed nonce
  auto record = ResultRecord::Decode(state_.map.at(ResultKey(edge.public_key(), 77)));
  ASSERT_TRUE(record.ok()) << record.status().ToString();
  EXPECT_EQ(record->body, body);
  EXPECT_EQ(record->edge, edge.public_key());
  EXPECT_EQ(record->status, ResultStatus::kPending);

  // Malformed bodies: never recorded.
  ExpertResultBody bad = body;
  bad.job = "";
  EXPECT_EQ(Run(result(edge, 80, bad)).code(), StatusCode::kInvalidArgument);
  bad = body;
  bad.output_cid = "sha256-tree:xyz";
  EXPECT_EQ(Run(result(edge, 81, bad)).code(), StatusCode::kInvalidArgument);
  bad = body;
  bad.grad_output_cid = cid('d');  // forward with a grad_output
  EXPECT_EQ(Run(result(edge, 82, bad)).code(), StatusCode::kInvalidArgument);
  bad = body;
  bad.kind = CallKind::kBackward;  // backward without one
  EXPECT_EQ(Run(result(edge, 83, bad)).code(), StatusCode::kInvalidArgument);
  bad = body;
  bad.rows = 0;
  EXPECT_EQ(Run(result(edge, 84, bad)).code(), StatusCode::kInvalidArgument);
  Bytes truncated = body.Encode();
  truncated.pop_back();
  EXPECT_EQ(Run(MakeTx(kChain, TxType::kExpertResult, edge, 85, truncated)).code(),
            StatusCode::kInvalidArgument);
  for (uint64_t n = 80; n <= 85; ++n) EXPECT_FALSE(state_.map.count(ResultKey(edge.public_key(), n)));
  ExpertResultBody backward = body;
  backward.kind = CallKind::kBackward;
  backward.grad_output_cid = cid('d');
  EXPECT_TRUE(Run(result(edge, 86, backward)).ok());
  EXPECT_TRUE(state_.map.count(PendingKey(edge.public_key(), 86)));
  EXPECT_TRUE(state_.map.count(JobResultKey("job-1", edge.public_key(), 86)));

  // A result for an expert nobody published is REJECTED as it is ordered, without votes, and
  // (fault_threshold 1) blacklists its edge: its next result is refused.
  ExpertResultBody unpublished = body;
  unpublished.expert_cid = cid('e');
  ASSERT_TRUE(Run(result(edge, 87, unpublished)).ok());
  auto rejected = ResultRecord::Decode(state_.map.at(ResultKey(edge.public_key(), 87)));
  ASSERT_TRUE(rejected.ok());
  EXPECT_EQ(rejected->status, ResultStatus::kRejected);
  EXPECT_TRUE(rejected->reason.starts_with("expert-not-published")) << rejected->reason;
  EXPECT_FALSE(state_.map.count(PendingKey(edge.public_key(), 87)));
  auto rep = Reputation::Decode(state_.map.at(ReputationKey(edge.public_key())));
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->blacklisted);
  EXPECT_EQ(rep->faults, 1u);
  EXPECT_EQ(Run(result(edge, 88, body)).code(), StatusCode::kPermissionDenied);
}

TEST_F(ExecuteTest, BlacklistedSignersAreRefused) {
  crypto::PrivateKey researcher = KeyFromByte(22);
  ASSERT_TRUE(Run(Register(admin_, researcher, NodeRole::kResearcher, 1)).ok());
  Reputation rep;
  rep.strikes = 3;
  rep.blacklisted = true;
  rep.blacklisted_height = 5;
  state_.map[ReputationKey(researcher.public_key())] = rep.Encode();
  Tx tx = MakeTx(kChain, TxType::kPublishModel, researcher, 2,
                 PublishModel{"sha256-tree:" + std::string(64, 'c'), "m"}.Encode());
  Status s = Run(tx);
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(s.message().find("blacklisted"), std::string::npos);
}

// ---- Four replicas on LedgerApps ----

struct Member {
  TempDir dir;
  std::unique_ptr<LedgerStore> store;
  std::unique_ptr<LedgerApp> app;
  std::unique_ptr<pbft::Replica> replica;
};

class ClusterTest : public ::testing::Test {
 protected:
  ClusterTest() : admin_(KeyFromByte(9)), genesis_(MakeGenesis(validators_, admin_)) {
    for (uint32_t i = 0; i < 4; ++i) {
      members_.push_back(std::make_unique<Member>());
      Open(i);
    }
    for (uint32_t i = 0; i < 4; ++i) Run(i, members_[i]->replica->Start(now_));
    Drain();
  }

  void Open(uint32_t i) {
    Member& m = *members_[i];
    m.replica.reset();
    m.app.reset();
    m.store.reset();
    LedgerOptions opts;
    opts.path = m.dir.path();
    opts.validators = genesis_.Validators();
    opts.limits = genesis_.Limits();
    opts.genesis_digest = genesis_.Hash();
    auto store = LedgerStore::Open(opts);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    m.store = std::move(store).value();
    auto app = LedgerApp::Create(m.store.get(), genesis_, TxRegistry::Default());
    ASSERT_TRUE(app.ok()) << app.status().ToString();
    m.app = std::move(app).value();
    auto durable = m.store->LoadDurable();
    ASSERT_TRUE(durable.ok());
    auto replica = pbft::Replica::Create(genesis_.PbftConfig(), i, validators_.keys[i],
                                         m.app.get(), durable.value());
    ASSERT_TRUE(replica.ok()) << replica.status().ToString();
    m.replica = std::move(replica).value();
  }

  void Run(uint32_t from, const pbft::Actions& actions) {
    for (const pbft::Action& a : actions) {
      if (auto* send = std::get_if<pbft::SendAction>(&a)) {
        for (uint32_t to = 0; to < 4; ++to) {
          if (to != from && (send->to == pbft::kBroadcast || send->to == to)) {
            queue_.push_back({to, send->bytes});
          }
        }
      } else if (auto* persist = std::get_if<pbft::PersistAction>(&a)) {
        ASSERT_TRUE(members_[from]->store->WriteDurable(persist->writes).ok());
      } else if (auto* commit = std::get_if<pbft::CommitAction>(&a)) {
        committed_[from] += commit->tx_ids.size();
      }
    }
  }

  void Drain() {
    while (!queue_.empty()) {
      auto [to, bytes] = std::move(queue_.front());
      queue_.pop_front();
      if (down_.count(to)) continue;
      Run(to, members_[to]->replica->OnMessage(bytes, now_));
    }
  }

  Status Submit(uint32_t at, const Tx& tx) {
    pbft::Actions out;
    Status s = members_[at]->replica->SubmitTx(tx.Encode(), now_, &out);
    Run(at, out);
    return s;
  }

  void Tick(int64_t ms) {
    now_ += ms;
    for (uint32_t i = 0; i < 4; ++i) {
      if (!down_.count(i)) Run(i, members_[i]->replica->OnTick(now_));
    }
    Drain();
  }

  Validators validators_;
  crypto::PrivateKey admin_;
  Genesis genesis_;
  std::vector<std::unique_ptr<Member>> members_;
  std::deque<std::pair<uint32_t, Bytes>> queue_;
  std::map<uint32_t, size_t> committed_;
  std::set<uint32_t> down_;
  int64_t now_ = 1700000000000;
};

TEST_F(ClusterTest, CommitsValidTransactionsAndAgreesOnStateRoots) {
  uint64_t nonce = 1;
  for (int i = 0; i < 20; ++i) {
    crypto::PrivateKey node = KeyFromByte(static_cast<uint8_t>(30 + i));
    Tx tx = MakeTx(kChain, TxType::kRegisterNode, admin_, nonce++,
                   RegisterNode{node.public_key(), NodeRole::kEdge, "edge-" + std::to_string(i),
                                ""}.Encode());
    ASSERT_TRUE(Submit(static_cast<uint32_t>(i % 4), tx).ok());
    if (i % 5 == 4) Tick(10);
  }
  // Rejected at admission, never committed: a non-admin registration and a replay.
  Tx bad = MakeTx(kChain, TxType::kRegisterNode, KeyFromByte(99), 1,
                  RegisterNode{KeyFromByte(98).public_key(), NodeRole::kEdge, "x", ""}.Encode());
  EXPECT_EQ(Submit(1, bad).code(), StatusCode::kPermissionDenied);
  for (int i = 0; i < 20; ++i) Tick(50);

  const LedgerHead head0 = members_[0]->store->Head();
  EXPECT_GE(head0.height, 1u);
  for (uint32_t i = 0; i < 4; ++i) {
    LedgerHead h = members_[i]->store->Head();
    EXPECT_EQ(h.height, head0.height) << i;
    EXPECT_EQ(h.digest, head0.digest) << i;
    EXPECT_EQ(h.state_root, head0.state_root) << i;
    EXPECT_EQ(committed_[i], 20u) << i;
    auto nodes = members_[i]->store->Scan("node/", "", 1000);
    ASSERT_TRUE(nodes.ok());
    EXPECT_EQ(nodes->size(), 24u);  // 4 validators + 20 edges
    ChainCheck check = VerifyChainAndState(*members_[i]->store, genesis_, TxRegistry::Default());
    EXPECT_TRUE(check.ok) << check.first_bad_height << ": " << check.reason;
  }
  EXPECT_FALSE(members_[0]->store->HasTx(bad.Id()));
  // The replay of a committed transaction is refused.
  Tx first = MakeTx(kChain, TxType::kRegisterNode, admin_, 1,
                    RegisterNode{KeyFromByte(30).public_key(), NodeRole::kEdge, "edge-0",
                                 ""}.Encode());
  EXPECT_EQ(Submit(2, first).code(), StatusCode::kAlreadyExists);

  // A reopened replica resumes from RocksDB with the same head and state root.
  Open(3);
  EXPECT_EQ(members_[3]->store->Head().state_root, head0.state_root);
  EXPECT_EQ(members_[3]->app->Head().seq, head0.height);
}

TEST_F(ClusterTest, AReplicaThatMissedBlocksCatchesUpByStateTransfer) {
  down_.insert(3);
  for (int i = 0; i < 40; ++i) {
    Tx tx = MakeTx(kChain, TxType::kRegisterNode, admin_, static_cast<uint64_t>(i + 1),
                   RegisterNode{KeyFromByte(static_cast<uint8_t>(100 + i)).public_key(),
                                NodeRole::kEdge, "e" + std::to_string(i), ""}.Encode());
    ASSERT_TRUE(Submit(0, tx).ok());
    Tick(20);
  }
  const uint64_t height = members_[0]->store->Head().height;
  ASSERT_GE(height, 20u);
  EXPECT_EQ(members_[3]->store->Head().height, 0u);
  down_.erase(3);
  Open(3);
  Run(3, members_[3]->replica->Start(now_));
  for (int i = 0; i < 40 && members_[3]->store->Head().height < height; ++i) Tick(600);
  EXPECT_EQ(members_[3]->store->Head().height, height);
  EXPECT_EQ(members_[3]->store->Head().state_root, members_[0]->store->Head().state_root);
  ChainCheck check = VerifyChainAndState(*members_[3]->store, genesis_, TxRegistry::Default());
  EXPECT_TRUE(check.ok) << check.first_bad_height << ": " << check.reason;
}

TEST(LedgerAppTest, VerifyChainAndStateNamesABlockWhoseTransactionCannotExecute) {
  Validators v;
  crypto::PrivateKey admin = KeyFromByte(9);
  Genesis genesis = MakeGenesis(v, admin);
  TempDir dir;
  LedgerOptions opts;
  opts.path = dir.path();
  opts.validators = genesis.Validators();
  opts.genesis_digest = genesis.Hash();
  auto store = LedgerStore::Open(opts);
  ASSERT_TRUE(store.ok());
  auto app = LedgerApp::Create(store->get(), genesis, TxRegistry::Default());
  ASSERT_TRUE(app.ok());
  // Block 1 certified by a quorum but holding a registration signed by a non-admin key: the
  // certificates and links verify, the state replay does not.
  Tx bad = MakeTx(kChain, TxType::kRegisterNode, KeyFromByte(50), 1,
                  RegisterNode{KeyFromByte(51).public_key(), NodeRole::kEdge, "x", ""}.Encode());
  Block block;
  block.header.height = 1;
  block.header.prev_hash = genesis.Hash();
  block.header.state_root = (*store)->Head().state_root;
  block.header.time_unix_ms = 1700000000001;
  block.txs = {bad.Encode()};
  block.header.tx_root = TxRoot(block.txs);
  CommitCertificate cert = v.Certify(0, 1, block.Hash());
  StateCommit same{{}, (*store)->Head().state_root};
  ASSERT_TRUE((*store)->Append(block.Encode(), cert, &same).ok());
  EXPECT_TRUE(VerifyChain(**store).ok);
  ChainCheck check = VerifyChainAndState(**store, genesis, TxRegistry::Default());
  EXPECT_FALSE(check.ok);
  EXPECT_EQ(check.first_bad_height, 1u);
  EXPECT_NE(check.reason.find("does not execute"), std::string::npos) << check.reason;
  // A ledger of another genesis is refused.
  Genesis other = genesis;
  other.chain_id = "other";
  EXPECT_EQ(LedgerApp::Create(store->get(), other, TxRegistry::Default()).status().code(),
            StatusCode::kFailedPrecondition);
}

TEST(LedgerAppTest, HostileBlocksAreRejectedWithoutCrashing) {
  Validators v;
  Genesis genesis = MakeGenesis(v, KeyFromByte(9));
  TempDir dir;
  LedgerOptions opts;
  opts.path = dir.path();
  opts.validators = genesis.Validators();
  opts.genesis_digest = genesis.Hash();
  auto store = LedgerStore::Open(opts);
  ASSERT_TRUE(store.ok());
  auto app = LedgerApp::Create(store->get(), genesis, TxRegistry::Default());
  ASSERT_TRUE(app.ok());
  pbft::BlockContext ctx{1, 0, 0, 1700000000000};
  Bytes good = (*app)->ProposeBlock(ctx, {});
  EXPECT_TRUE((*app)->ValidateBlock(ctx, good).ok());
  for (size_t n = 0; n < good.size(); n += 5) {
    EXPECT_FALSE((*app)->ValidateBlock(ctx, ByteSpan(good.data(), n)).ok()) << n;
  }
  pbft::BlockContext wrong_proposer{1, 0, 2, 1700000000000};
  EXPECT_FALSE((*app)->ValidateBlock(wrong_proposer, good).ok());
  pbft::BlockContext far_past{1, 0, 0, 1600000000000};
  EXPECT_FALSE((*app)->ValidateBlock(far_past, good).ok());  // block time in the future
  pbft::BlockContext wrong_height{2, 0, 0, 1700000000000};
  EXPECT_FALSE((*app)->CheckCommittedBlock(2, good).ok());
  (void)wrong_height;
  Bytes junk(1000, 0xAB);
  EXPECT_FALSE((*app)->TxsOf(junk).ok());
  EXPECT_FALSE((*app)->BlockDigest(junk).ok());
}

}  // namespace
}  // namespace trustmoe::ledger
