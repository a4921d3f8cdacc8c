// The real `trustmoe` binary on genesis files and on ledgers built here with LedgerStore and
// LedgerApp (certified with the test's validator keys): genesis creation and its bad inputs,
// the offline ledger commands, a byte flipped in a stored block, proof files, and hostile
// arguments. Online, the job, verdict and blacklist commands against four validators run in
// this process on loopback ports; the other online commands run in tests/integration. The
// `trustmoe job` commands run against a fake JobService in this process that checks every
// signature, and without any gate for malformed specs and usage errors.
#include <arpa/inet.h>
#include <errno.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <rocksdb/db.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "chain/client/chain_client.h"
#include "chain/ledger/app.h"
#include "chain/ledger/genesis.h"
#include "chain/ledger/job.h"
#include "chain/ledger/ledger_store.h"
#include "chain/ledger/replay.h"
#include "chain/ledger/result.h"
#include "chain/ledger/state.h"
#include "chain/ledger/tx.h"
#include "chain/ledger/verdict.h"
#include "chain/validator/validator.h"
#include "common/clock.h"
#include "common/files.h"
#include "edge/expert_format.h"
#include "edge/numeric.h"
#include "edge/safetensors.h"
#include "tests/ledger/ledger_fixture.h"
#include "tests/storage/store_process.h"
#include "trustmoe/v1/edge.grpc.pb.h"
#include "trustmoe/v1/gate.grpc.pb.h"

namespace trustmoe::cli {
namespace {

using ledger::testing::KeyFromByte;
using ledger::testing::Validators;
using storage::testing::CliBinary;
using storage::testing::FileExists;
using storage::testing::ProcessResult;
using storage::testing::ReadFileBytes;
using storage::testing::RunProcess;
using storage::testing::TempDir;
using storage::testing::WriteFileOrDie;

constexpr char kChain[] = "cli-test";
constexpr int64_t kTime0 = 1700000000000;

std::string ReadText(const std::string& path) {
  auto bytes = ReadFileBytes(path);
  return bytes ? std::string(bytes->begin(), bytes->end()) : std::string();
}

ProcessResult Cli(const TempDir& dir, std::vector<std::string> args) {
  args.insert(args.begin(), CliBinary());
  return RunProcess(args, dir.path(), std::chrono::seconds(60));
}

// A clear error: exit code 1 (not a crash, not a parse-error code), one "trustmoe: error:" line.
void ExpectCleanError(const ProcessResult& r, const std::string& needle) {
  EXPECT_EQ(r.exit_code, 1) << "signal " << r.signal << "\nstdout: " << r.out
                            << "\nstderr: " << r.err;
  EXPECT_EQ(r.signal, 0);
  EXPECT_NE(r.err.find("trustmoe: error:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "expected '" << needle << "' in: " << r.err;
}

nlohmann::json ParseJson(const ProcessResult& r) {
  try {
    return nlohmann::json::parse(r.out);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not JSON: " << e.what() << "\n" << r.out << "\nstderr: " << r.err;
    return {};
  }
}

// ---- genesis ----

class GenesisCommandTest : public ::testing::Test {
 protected:
  GenesisCommandTest() {
    for (int i = 0; i < 5; ++i) {
      keys_.push_back(KeyFromByte(static_cast<uint8_t>(i + 1)));
      WriteFileOrDie(PubPath(i), keys_.back().public_key().ToPem());
    }
    WriteFileOrDie(dir_.Sub("admin.pub.pem"), KeyFromByte(9).public_key().ToPem());
    WriteFileOrDie(dir_.Sub("admin.pem"), KeyFromByte(9).ToPem(), 0600);
  }
  std::string PubPath(int i) const { return dir_.Sub("v" + std::to_string(i) + ".pub.pem"); }
  // v<i>=<pem file or hex>@127.0.0.1:750<i>
  std::string Spec(int i, bool hex = false) const {
    return "v" + std::to_string(i) + "=" + (hex ? keys_[i].public_key().Hex() : PubPath(i)) +
           "@127.0.0.1:750" + std::to_string(i);
  }
  std::vector<std::string> Args(int n, const std::string& out) const {
    std::vector<std::string> args = {"genesis", "--chain-id", kChain, "--f", "1"};
    for (int i = 0; i < n; ++i) {
      args.push_back("--validator");
      args.push_back(Spec(i, i % 2 == 1));
    }
    args.insert(args.end(), {"--admin-key", dir_.Sub("admin.pub.pem"), "--created-unix-ms",
                             "1700000000000", "--out", out});
    return args;
  }

  TempDir dir_;
  std::vector<crypto::PrivateKey> keys_;
};

TEST_F(GenesisCommandTest, WritesAFileWhoseDigestIsPrinted) {
  std::string out = dir_.Sub("genesis.json");
  ProcessResult r = Cli(dir_, Args(4, out));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto genesis = ledger::Genesis::Load(out);
  ASSERT_TRUE(genesis.ok()) << genesis.status().ToString();
  EXPECT_EQ(genesis->chain_id, kChain);
  ASSERT_EQ(genesis->validators.size(), 4u);
  EXPECT_EQ(genesis->validators[1].key, keys_[1].public_key());  // given as hex
  EXPECT_EQ(genesis->validators[2].key, keys_[2].public_key());  // given as PEM
  EXPECT_EQ(genesis->validators[3].endpoint, "127.0.0.1:7503");
  EXPECT_EQ(genesis->admin_key, KeyFromByte(9).public_key());
  EXPECT_EQ(genesis->created_unix_ms, 1700000000000);
  EXPECT_NE(r.out.find(crypto::DigestHex(genesis->Hash())), std::string::npos) << r.out;

  // Parameters and --json; the same inputs give the same digest.
  std::vector<std::string> args = Args(4, dir_.Sub("g2.json"));
  args.insert(args.end(),
              {"--param", "strike_threshold=5", "--param", "block_txs_max=500", "--json"});
  r = Cli(dir_, args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = ParseJson(r);
  auto g2 = ledger::Genesis::Load(dir_.Sub("g2.json"));
  ASSERT_TRUE(g2.ok());
  EXPECT_EQ(g2->params.strike_threshold, 5u);
  EXPECT_EQ(g2->params.block_txs_max, 500u);
  EXPECT_EQ(j["digest"], crypto::DigestHex(g2->Hash()));
  EXPECT_NE(g2->Hash(), genesis->Hash());
}

TEST_F(GenesisCommandTest, RefusesToOverwriteWithoutForce) {
  std::string out = dir_.Sub("genesis.json");
  WriteFileOrDie(out, std::string("keep me"));
  ExpectCleanError(Cli(dir_, Args(4, out)), "--force");
  EXPECT_EQ(ReadText(out), "keep me");
  std::vector<std::string> args = Args(4, out);
  args.push_back("--force");
  ProcessResult r = Cli(dir_, args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(ledger::Genesis::Load(out).ok());
}

TEST_F(GenesisCommandTest, BadInputsGiveClearErrorsAndNoFile) {
  std::string out = dir_.Sub("bad.json");
  // n < 3f + 1.
  ExpectCleanError(Cli(dir_, Args(3, out)), "3f + 1");
  std::vector<std::string> args = Args(4, out);
  args[4] = "2";  // --f 2 with 4 validators
  ExpectCleanError(Cli(dir_, args), "3f + 1");
  // The same key twice.
  args = Args(4, out);
  args.insert(args.end(), {"--validator", "v9=" + PubPath(0) + "@127.0.0.1:7509"});
  ExpectCleanError(Cli(dir_, args), "public key");
  // The same name twice.
  args = Args(4, out);
  args.insert(args.end(), {"--validator", "v0=" + PubPath(4) + "@127.0.0.1:7509"});
  ExpectCleanError(Cli(dir_, args), "'v0'");
  // Bad hex: too short, and not hex at all.
  args = Args(4, out);
  args.insert(args.end(), {"--validator", "v9=" + std::string(63, 'a') + "@127.0.0.1:7509"});
  ExpectCleanError(Cli(dir_, args), "63 hex digits");
  args = Args(4, out);
  args.insert(args.end(), {"--validator", "v9=" + std::string(64, 'g') + "@127.0.0.1:7509"});
  ExpectCleanError(Cli(dir_, args), "neither 64 hex digits");
  // Malformed specs and endpoints.
  for (const std::string& spec : {std::string("v9"), std::string("=abc@h:1"), "v9=" + PubPath(4),
                                  "v9=" + PubPath(4) + "@nohost", "v9=" + PubPath(4) + "@h:0",
                                  "v9=" + PubPath(4) + "@h:99999"}) {
    args = Args(4, out);
    args.insert(args.end(), {"--validator", spec});
    ExpectCleanError(Cli(dir_, args), "--validator");
  }
  // A private key where a public key belongs; a missing admin key file.
  args = Args(4, out);
  args[args.size() - 5] = dir_.Sub("admin.pem");
  ExpectCleanError(Cli(dir_, args), "private key");
  args[args.size() - 5] = dir_.Sub("missing.pem");
  ExpectCleanError(Cli(dir_, args), "--admin-key");
  // Bad chain id, unknown and malformed parameters, out-of-range values.
  args = Args(4, out);
  args[2] = "Bad Chain!";
  ExpectCleanError(Cli(dir_, args), "chain");
  for (const char* param :
       {"nonsense=1", "strike_threshold", "block_txs_max=-1", "block_txs_max=99999999999",
        "strike_threshold=0", "tx_bytes_max=abc"}) {
    args = Args(4, out);
    args.insert(args.end(), {"--param", std::string(param)});
    ProcessResult r = Cli(dir_, args);
    EXPECT_EQ(r.exit_code, 1) << param << ": " << r.err;
    EXPECT_NE(r.err.find("trustmoe: error:"), std::string::npos) << param << ": " << r.err;
  }
  EXPECT_FALSE(FileExists(out));
}

// ---- a ledger built here ----

// Blocks: 1 registers a researcher and an edge (admin), 2 publishes an expert and a model
// (researcher), 3 is a null block, 4 re-registers the edge with an endpoint, 5 is empty.
class LedgerCommandTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kHead = 5;

  LedgerCommandTest() : admin_(KeyFromByte(9)), researcher_(KeyFromByte(20)) {
    genesis_.chain_id = kChain;
    genesis_.created_unix_ms = kTime0;
    genesis_.f = 1;
    for (size_t i = 0; i < validators_.keys.size(); ++i) {
      genesis_.validators.push_back({"v" + std::to_string(i), validators_.keys[i].public_key(),
                                     "127.0.0.1:" + std::to_string(7500 + i)});
    }
    genesis_.admin_key = admin_.public_key();
    WriteFileOrDie(genesis_path(), genesis_.ToJson());
    BuildLedger();
  }

  std::string genesis_path() const { return dir_.Sub("genesis.json"); }
  std::string data_dir() const { return dir_.Sub("data"); }
  std::string ledger_path() const { return dir_.Sub("data/ledger"); }

  ledger::LedgerOptions Options() const {
    ledger::LedgerOptions opts;
    opts.path = ledger_path();
    opts.validators = genesis_.Validators();
    opts.limits = genesis_.Limits();
    opts.genesis_digest = genesis_.Hash();
    return opts;
  }

  Bytes Sign(const crypto::PrivateKey& key, ledger::TxType type, Bytes body) {
    ledger::Tx tx = ledger::MakeTx(kChain, type, key, ++nonce_, std::move(body));
    ids_.push_back(tx.Id());
    return tx.Encode();
  }

  void Commit(ledger::LedgerApp& app, uint64_t height, uint64_t view, const std::vector<Bytes>& txs,
              bool null_block = false) {
    pbft::CommittedBlock committed;
    committed.seq = height;
    if (null_block) {
      committed.digest = pbft::NullBlockDigest(height);
    } else {
      pbft::BlockContext ctx{height, view, static_cast<uint32_t>(view % 4),
                             kTime0 + static_cast<int64_t>(height) * 1000};
      committed.block = app.ProposeBlock(ctx, txs);
      auto txs_in = app.TxsOf(committed.block);
      ASSERT_TRUE(txs_in.ok());
      ASSERT_EQ(txs_in->size(), txs.size()) << "block " << height << " left transactions out";
      auto digest = app.BlockDigest(committed.block);
      ASSERT_TRUE(digest.ok());
      committed.digest = *digest;
    }
    committed.cert = validators_.Certify(view, height, committed.digest);
    app.ExecuteBlock(committed);
  }

  void BuildLedger() {
    ASSERT_TRUE(MakeDirs(data_dir()).ok());
    auto store = ledger::LedgerStore::Open(Options());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    auto app = ledger::LedgerApp::Create(store->get(), genesis_, ledger::TxRegistry::Default());
    ASSERT_TRUE(app.ok()) << app.status().ToString();
    ledger::LedgerApp& a = **app;
    const crypto::PublicKey edge = KeyFromByte(21).public_key();
    Commit(a, 1, 0,
           {Sign(admin_, ledger::TxType::kRegisterNode,
                 ledger::RegisterNode{researcher_.public_key(), ledger::NodeRole::kResearcher,
                                      "alice", ""}
                     .Encode()),
            Sign(admin_, ledger::TxType::kRegisterNode,
                 ledger::RegisterNode{edge, ledger::NodeRole::kEdge, "edge-1", ""}.Encode())});
    Commit(a, 2, 0,
           {Sign(researcher_, ledger::TxType::kPublishExpert,
                 ledger::PublishExpert{Cid('e'), "moe/expert-0", "swiglu", 4096}.Encode()),
            Sign(researcher_, ledger::TxType::kPublishModel,
                 ledger::PublishModel{Cid('m'), "moe"}.Encode())});
    Commit(a, 3, 1, {}, /*null_block=*/true);
    Commit(a, 4, 1,
           {Sign(admin_, ledger::TxType::kRegisterNode,
                 ledger::RegisterNode{edge, ledger::NodeRole::kEdge, "edge-1", "10.0.0.7:7700"}
                     .Encode())});
    Commit(a, 5, 1, {});
    ASSERT_EQ((*store)->Head().height, kHead);
  }

  static std::string Cid(char c) { return "sha256-tree:" + std::string(64, c == 'e' ? 'e' : 'a'); }

  // Flips one byte of the stored block `height` (with the ledger closed).
  void FlipByteOfBlock(uint64_t height, size_t from_end) {
    rocksdb::DB* raw = nullptr;
    rocksdb::Options options;
    ASSERT_TRUE(rocksdb::DB::Open(options, ledger_path(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string value;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), ledger::BlockKey(height), &value).ok());
    ASSERT_GT(value.size(), from_end);
    value[value.size() - 1 - from_end] ^= 0x01;
    rocksdb::WriteOptions sync;
    sync.sync = true;
    ASSERT_TRUE(db->Put(sync, ledger::BlockKey(height), value).ok());
  }

  ProcessResult Ledger(std::vector<std::string> args) {
    args.insert(args.begin(), {"ledger", "--genesis", genesis_path(), "--data-dir", data_dir()});
    return Cli(dir_, args);
  }

  TempDir dir_;
  Validators validators_;
  crypto::PrivateKey admin_;
  crypto::PrivateKey researcher_;
  ledger::Genesis genesis_;
  uint64_t nonce_ = 0;
  std::vector<ledger::TxId> ids_;  // in block order: 2 in block 1, 2 in block 2, 1 in block 4
};

TEST_F(LedgerCommandTest, HeadAndBlocks) {
  ProcessResult r = Ledger({"head"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("height       5"), std::string::npos) << r.out;
  r = Ledger({"head", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json head = ParseJson(r);
  EXPECT_EQ(head["height"], kHead);
  EXPECT_EQ(head["genesis_digest"], crypto::DigestHex(genesis_.Hash()));

  r = Ledger({"blocks", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json blocks = ParseJson(r);
  ASSERT_EQ(blocks.size(), kHead);
  EXPECT_EQ(blocks[0]["tx_count"], 2);
  EXPECT_EQ(blocks[2]["null"], true);
  EXPECT_EQ(blocks[4]["digest"], head["digest"]);
  r = Ledger({"blocks", "--from", "2", "--to", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("null block"), std::string::npos) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 3) << r.out;  // header + 2 rows
}

TEST_F(LedgerCommandTest, BlockAndTx) {
  ProcessResult r = Ledger({"block", "2", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json block = ParseJson(r);
  ASSERT_EQ(block["txs"].size(), 2u);
  EXPECT_EQ(block["txs"][0]["id"], crypto::DigestHex(ids_[2]));
  EXPECT_EQ(block["txs"][0]["type"], "publish-expert");
  EXPECT_EQ(block["txs"][0]["body"]["arch"], "swiglu");
  EXPECT_EQ(block["txs"][1]["type"], "publish-model");
  EXPECT_EQ(block["certificate"]["signers"].size(), 3u);
  r = Ledger({"block", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("null block"), std::string::npos) << r.out;
  r = Ledger({"block", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("register-node"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("name=alice"), std::string::npos) << r.out;

  std::string proof_path = dir_.Sub("proof.json");
  r = Ledger({"tx", crypto::DigestHex(ids_[4]), "--proof-out", proof_path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("block        4"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("signer       " + admin_.public_key().Hex() + " (admin)"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("endpoint=10.0.0.7:7700"), std::string::npos) << r.out;
  ASSERT_TRUE(FileExists(proof_path));
  r = Ledger({"tx", crypto::DigestHex(ids_[1]), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json tx = ParseJson(r);
  EXPECT_EQ(tx["height"], 1);
  EXPECT_EQ(tx["proof"]["index"], 1);
  EXPECT_EQ(tx["proof"]["tx_count"], 2);
  EXPECT_EQ(tx["proof"]["verified"], true);
}

TEST_F(LedgerCommandTest, NodesExpertsAndModels) {
  ProcessResult r = Ledger({"nodes", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json nodes = ParseJson(r);
  ASSERT_EQ(nodes.size(), 6u);  // 4 validators, the researcher, the edge
  int edges = 0;
  for (const auto& n : nodes) {
    if (n["role"] == "edge") {
      ++edges;
      EXPECT_EQ(n["endpoint"], "10.0.0.7:7700");
      EXPECT_EQ(n["blacklisted"], false);
    }
  }
  EXPECT_EQ(edges, 1);
  r = Ledger({"nodes"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("alice"), std::string::npos) << r.out;
  r = Ledger({"experts", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json experts = ParseJson(r);
  ASSERT_EQ(experts.size(), 1u);
  EXPECT_EQ(experts[0]["name"], "moe/expert-0");
  EXPECT_EQ(experts[0]["height"], 2);
  r = Ledger({"models", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseJson(r).size(), 1u);
}

TEST_F(LedgerCommandTest, VerifyPassesOnAnIntactLedger) {
  ProcessResult r = Ledger({"verify"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("ledger OK"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("blocks/s"), std::string::npos) << r.out;
  r = Ledger({"verify", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = ParseJson(r);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["blocks_checked"], kHead);
}

TEST_F(LedgerCommandTest, VerifyNamesABlockWithOneByteChanged) {
  FlipByteOfBlock(2, 3);  // inside the last transaction: its tx root no longer matches
  ProcessResult r = Ledger({"verify"});
  ExpectCleanError(r, "block 2");
  EXPECT_EQ(r.out.find("ledger OK"), std::string::npos) << r.out;
  r = Ledger({"verify", "--json"});
  EXPECT_EQ(r.exit_code, 1);
  nlohmann::json j = ParseJson(r);
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["first_bad_height"], 2);
  // The block itself is refused; its neighbours still read.
  ExpectCleanError(Ledger({"block", "2"}), "block 2");
  EXPECT_EQ(Ledger({"block", "1"}).exit_code, 0);
  ExpectCleanError(Ledger({"tx", crypto::DigestHex(ids_[3])}), "");
}

TEST_F(LedgerCommandTest, VerifyNamesABlockWithAChangedHeader) {
  // Change a byte of block 4's header time: the certificate no longer signs its digest.
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), ledger_path(), &raw).ok());
  {
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string value;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), ledger::BlockKey(4), &value).ok());
    ledger::Block block = ledger::Block::Decode(AsBytes(value), genesis_.Limits()).value();
    Bytes header = block.header.Encode();
    Bytes bytes(value.begin(), value.end());
    auto at = std::search(bytes.begin(), bytes.end(), header.begin(), header.end());
    ASSERT_NE(at, bytes.end());
    *(at + static_cast<long>(header.size()) - 5) ^= 0x40;  // inside time_unix_ms
    value.assign(bytes.begin(), bytes.end());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), ledger::BlockKey(4), value).ok());
  }
  ExpectCleanError(Ledger({"verify"}), "block 4");
}

TEST_F(LedgerCommandTest, ProofFilesVerifyOfflineAndTamperingIsCaught) {
  std::string proof_path = dir_.Sub("proof.json");
  std::string id = crypto::DigestHex(ids_[2]);
  ASSERT_EQ(Ledger({"tx", id, "--proof-out", proof_path}).exit_code, 0);
  // Only the genesis and the proof file: no data directory.
  ProcessResult r = Cli(dir_, {"ledger", "proof", id, "--verify", "--proof-file", proof_path,
                               "--genesis", genesis_path()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("VERIFIED"), std::string::npos) << r.out;
  r = Cli(dir_,
          {"ledger", "proof", "--proof-file", proof_path, "--genesis", genesis_path(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseJson(r)["height"], 2);
  // From the data directory.
  r = Ledger({"proof", id, "--verify"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The proof of another transaction.
  ExpectCleanError(Cli(dir_, {"ledger", "proof", crypto::DigestHex(ids_[0]), "--proof-file",
                              proof_path, "--genesis", genesis_path()}),
                   "is for tx");

  nlohmann::json file = nlohmann::json::parse(ReadText(proof_path));
  auto tampered = [&](const std::string& field, const std::string& value) {
    nlohmann::json copy = file;
    copy[field] = value;
    std::string path = dir_.Sub("tampered-" + field + ".json");
    WriteFileOrDie(path, copy.dump());
    return Cli(dir_, {"ledger", "proof", "--proof-file", path, "--genesis", genesis_path()});
  };
  auto flip_hex = [](std::string hex, size_t at) {
    hex[at] = hex[at] == '0' ? '1' : '0';
    return hex;
  };
  std::string tx_hex = file["tx"];
  ExpectCleanError(tampered("tx", flip_hex(tx_hex, tx_hex.size() - 2)), "");
  std::string proof_hex = file["proof"];
  ExpectCleanError(tampered("proof", flip_hex(proof_hex, proof_hex.size() - 2)), "");
  std::string header_hex = file["header"];
  ExpectCleanError(tampered("header", flip_hex(header_hex, header_hex.size() - 2)), "");
  std::string cert_hex = file["certificate"];
  ExpectCleanError(tampered("certificate", flip_hex(cert_hex, cert_hex.size() - 2)), "");
  ExpectCleanError(tampered("tx", "zz"), "hex");
  ExpectCleanError(tampered("format", "other/v9"), "format");
  // A proof checked against another genesis.
  ledger::Genesis other = genesis_;
  other.chain_id = "other-chain";
  WriteFileOrDie(dir_.Sub("other.json"), other.ToJson());
  ExpectCleanError(Cli(dir_, {"ledger", "proof", "--proof-file", proof_path, "--genesis",
                              dir_.Sub("other.json")}),
                   "other-chain");
  // Garbage and missing files.
  WriteFileOrDie(dir_.Sub("garbage.json"), std::string("{not json"));
  ExpectCleanError(Cli(dir_, {"ledger", "proof", "--proof-file", dir_.Sub("garbage.json"),
                              "--genesis", genesis_path()}),
                   "not JSON");
  ExpectCleanError(Cli(dir_, {"ledger", "proof", "--proof-file", dir_.Sub("none.json"), "--genesis",
                              genesis_path()}),
                   "none.json");
}

TEST_F(LedgerCommandTest, HostileArgumentsGiveClearErrors) {
  ExpectCleanError(Ledger({"block", "0"}), "start at 1");
  ExpectCleanError(Ledger({"block", "-1"}), "'-1'");
  ExpectCleanError(Ledger({"block", "abc"}), "'abc'");
  ExpectCleanError(Ledger({"block", "3x"}), "'3x'");
  ExpectCleanError(Ledger({"block", "18446744073709551616"}), "18446744073709551616");
  ExpectCleanError(Ledger({"block", "6"}), "above the head");
  ExpectCleanError(Ledger({"blocks", "--from", "4", "--to", "2"}), "--from");
  ExpectCleanError(Ledger({"blocks", "--to", "99"}), "above the head");
  ExpectCleanError(Ledger({"tx", "xyz"}), "64 hex digits");
  ExpectCleanError(Ledger({"tx", std::string(63, 'a')}), "64 hex digits");
  ExpectCleanError(Ledger({"tx", std::string(64, 'a')}), "NOT_FOUND");
  ExpectCleanError(Ledger({"proof"}), "TX_ID");
  ExpectCleanError(Ledger({"watch"}), "--validator");

  // Missing and bad files and directories.
  ExpectCleanError(Cli(dir_, {"ledger", "--data-dir", data_dir(), "head"}), "--genesis");
  ExpectCleanError(
      Cli(dir_, {"ledger", "--genesis", dir_.Sub("none.json"), "--data-dir", data_dir(), "head"}),
      "none.json");
  WriteFileOrDie(dir_.Sub("bad-genesis.json"), std::string("{\"chain_id\": 5}"));
  ExpectCleanError(Cli(dir_, {"ledger", "--genesis", dir_.Sub("bad-genesis.json"), "--data-dir",
                              data_dir(), "head"}),
                   "bad-genesis.json");
  ExpectCleanError(
      Cli(dir_, {"ledger", "--genesis", genesis_path(), "--data-dir", dir_.Sub("none"), "head"}),
      "does not exist");
  ASSERT_TRUE(MakeDirs(dir_.Sub("empty")).ok());
  ExpectCleanError(
      Cli(dir_, {"ledger", "--genesis", genesis_path(), "--data-dir", dir_.Sub("empty"), "head"}),
      "no ledger");
  ExpectCleanError(Cli(dir_, {"ledger", "--genesis", genesis_path(), "head"}), "--validator");
  // A ledger of another genesis is refused, not misread.
  ledger::Genesis other = genesis_;
  other.params.strike_threshold = 7;
  WriteFileOrDie(dir_.Sub("other.json"), other.ToJson());
  ProcessResult r = Cli(
      dir_, {"ledger", "--genesis", dir_.Sub("other.json"), "--data-dir", data_dir(), "verify"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  // Submitting commands check their arguments before dialing anyone.
  ExpectCleanError(Cli(dir_, {"node", "register", "--genesis", genesis_path(), "--validator",
                              "127.0.0.1:1", "--key", dir_.Sub("none.pem"), "--node-key",
                              std::string(64, 'a'), "--role", "edge", "--name", "e"}),
                   "none.pem");
  WriteFileOrDie(dir_.Sub("admin.pem"), admin_.ToPem(), 0600);
  ExpectCleanError(Cli(dir_, {"node", "register", "--genesis", genesis_path(), "--validator",
                              "127.0.0.1:1", "--key", dir_.Sub("admin.pem"), "--node-key",
                              std::string(64, 'a'), "--role", "wizard", "--name", "e"}),
                   "--role");
  WriteFileOrDie(dir_.Sub("other.pem"), researcher_.ToPem(), 0600);
  ExpectCleanError(Cli(dir_, {"node", "register", "--genesis", genesis_path(), "--validator",
                              "127.0.0.1:1", "--key", dir_.Sub("other.pem"), "--node-key",
                              std::string(64, 'a'), "--role", "edge", "--name", "e"}),
                   "admin key");
  ExpectCleanError(Cli(dir_, {"expert", "publish", "--genesis", genesis_path(), "--validator",
                              "127.0.0.1:1", "--key", dir_.Sub("other.pem"), "--cid", "bafy",
                              "--name", "x", "--arch", "swiglu", "--size", "1"}),
                   "not a CID");
  ExpectCleanError(Cli(dir_, {"model", "publish", "--genesis", genesis_path(), "--validator",
                              "127.0.0.1:1", "--key", dir_.Sub("other.pem"), "--cid", Cid('m'),
                              "--name", std::string(300, 'n')}),
                   "--name");
  // Nobody listens on port 1: a clear UNAVAILABLE, not a hang or a crash.
  ExpectCleanError(
      Cli(dir_, {"model", "publish", "--genesis", genesis_path(), "--validator", "127.0.0.1:1",
                 "--key", dir_.Sub("other.pem"), "--cid", Cid('m'), "--name", "m"}),
      "UNAVAILABLE");
  ExpectCleanError(
      Cli(dir_, {"ledger", "--genesis", genesis_path(), "--validator", "127.0.0.1:1", "head"}),
      "UNAVAILABLE");
}

// The client library's own checks, on the same ledger.
TEST_F(LedgerCommandTest, ReplayMatchesTheLedgerStateRoots) {
  ledger::LedgerOptions opts = Options();
  opts.read_only = true;
  auto store = ledger::LedgerStore::Open(opts);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  ledger::ChainReplay replay(genesis_, ledger::TxRegistry::Default());
  for (uint64_t h = 1; h <= kHead; ++h) {
    auto raw_block = (*store)->RawBlock(h);
    auto raw_cert = (*store)->RawCert(h);
    ASSERT_TRUE(raw_block.ok() && raw_cert.ok());
    auto block = chain::VerifyBlockBytes(genesis_, h, *raw_block, *raw_cert, {});
    ASSERT_TRUE(block.ok()) << block.status().ToString();
    ASSERT_TRUE(replay.Apply(*block).ok()) << h;
    auto root = (*store)->StateRootAt(h);
    ASSERT_TRUE(root.ok());
    EXPECT_EQ(replay.state_root(), *root) << "after block " << h;
  }
  // Out of order, and a block that does not link.
  auto again = (*store)->GetBlock(2);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(replay.Apply(*again).code(), StatusCode::kDataLoss);
  ledger::ChainReplay fresh(genesis_, ledger::TxRegistry::Default());
  auto b1 = (*store)->GetBlock(1);
  ASSERT_TRUE(b1.ok());
  b1->block->header.prev_hash[0] ^= 1;
  EXPECT_EQ(fresh.Apply(*b1).code(), StatusCode::kDataLoss);

  // A certificate short of a quorum, or for another height, is refused.
  auto raw_block = (*store)->RawBlock(1);
  ASSERT_TRUE(raw_block.ok());
  ledger::Digest digest = (*store)->GetBlock(1)->digest;
  Bytes two = validators_.Certify(0, 1, digest, {0, 1}).Encode();
  EXPECT_EQ(chain::VerifyBlockBytes(genesis_, 1, *raw_block, two, {}).status().code(),
            StatusCode::kUnauthenticated);
  Bytes wrong_height = validators_.Certify(0, 2, digest).Encode();
  EXPECT_FALSE(chain::VerifyBlockBytes(genesis_, 1, *raw_block, wrong_height, {}).ok());
  Bytes good = validators_.Certify(0, 1, digest).Encode();
  EXPECT_TRUE(chain::VerifyBlockBytes(genesis_, 1, *raw_block, good, {}).ok());
  EXPECT_FALSE(chain::VerifyBlockBytes(genesis_, 2, *raw_block, good, {}).ok());
  EXPECT_FALSE(chain::VerifyBlockBytes(genesis_, 1, *raw_block, good, AsBytes("short")).ok());
  Bytes junk(100, 0xAB);
  EXPECT_EQ(chain::VerifyBlockBytes(genesis_, 1, junk, good, {}).status().code(),
            StatusCode::kDataLoss);
  EXPECT_FALSE(chain::VerifyBlockBytes(genesis_, 1, *raw_block, junk, {}).ok());
}

// ---- expert check ----

TEST(ExpertCheckCommandTest, AcceptsAValidExpertAndNamesWhatIsWrongWithOthers) {
  TempDir dir;
  const int64_t d_model = 8, d_ff = 16;
  std::vector<float> w1(d_ff * d_model, 0.5f), w3(d_ff * d_model, 0.25f), w2(d_model * d_ff, 1.0f);
  auto span = [](const std::vector<float>& v) {
    return ByteSpan(reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float));
  };
  edge::ExpertSpec spec{std::string(edge::kArchSwiglu), d_model, d_ff, edge::DType::kF32};
  auto bytes = edge::WriteSafetensors(
      edge::ExpertMetadata(spec),
      {{"w1", edge::DType::kF32, {d_ff, d_model}, span(w1)},
       {"w3", edge::DType::kF32, {d_ff, d_model}, span(w3)},
       {"w2", edge::DType::kF32, {d_model, d_ff}, span(w2)}});
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  const std::string good = dir.Sub("expert.safetensors");
  WriteFileOrDie(good, *bytes);

  ProcessResult r = RunProcess({CliBinary(), "expert", "check", good}, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("swiglu, d_model 8, d_ff 16, F32"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(crypto::ComputeCid(*bytes).ToString()), std::string::npos) << r.out;
  r = RunProcess({CliBinary(), "expert", "check", good, "--json"}, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["parameters"], 3 * d_model * d_ff);
  EXPECT_EQ(j["arch"], "swiglu");

  // Truncated, one tensor missing, and not a safetensors file at all.
  Bytes truncated(bytes->begin(), bytes->end() - 4);
  WriteFileOrDie(dir.Sub("truncated.safetensors"), truncated);
  auto two = edge::WriteSafetensors(edge::ExpertMetadata(spec),
                                    {{"w1", edge::DType::kF32, {d_ff, d_model}, span(w1)},
                                     {"w2", edge::DType::kF32, {d_model, d_ff}, span(w2)}});
  ASSERT_TRUE(two.ok());
  WriteFileOrDie(dir.Sub("missing.safetensors"), *two);
  WriteFileOrDie(dir.Sub("text.safetensors"), std::string("not a tensor file"));
  for (const auto& [file, fragment] :
       std::vector<std::pair<std::string, std::string>>{{"truncated.safetensors", "safetensors"},
                                                        {"missing.safetensors", "w3"},
                                                        {"text.safetensors", "safetensors"},
                                                        {"absent.safetensors", "NOT_FOUND"}}) {
    r = RunProcess({CliBinary(), "expert", "check", dir.Sub(file)}, dir.path());
    EXPECT_EQ(r.exit_code, 1) << file;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << file << ": " << r.err;
  }
}


// ---- expert new | input | run ----

TEST(ExpertFileCommandsTest, NewInputAndRunRoundTrip) {
  TempDir dir;
  const std::string e = dir.Sub("e.safetensors"), x = dir.Sub("x.safetensors"),
                    y = dir.Sub("y.safetensors");
  ProcessResult r = RunProcess({CliBinary(), "expert", "new", "--arch", "swiglu", "--d-model",
                                "32", "--d-ff", "64", "--seed", "3", "-o", e},
                               dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto first = ReadFile(e, 1 << 20);
  ASSERT_TRUE(first.ok());
  EXPECT_NE(r.out.find(crypto::ComputeCid(AsBytes(*first)).ToString()), std::string::npos);
  // Same seed, same bytes.
  r = RunProcess({CliBinary(), "expert", "new", "--arch", "swiglu", "--d-model", "32", "--d-ff",
                  "64", "--seed", "3", "-o", dir.Sub("e2.safetensors")},
                 dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(*ReadFile(dir.Sub("e2.safetensors"), 1 << 20), *first);

  r = RunProcess({CliBinary(), "expert", "input", "--rows", "5", "--d-model", "32", "-o", x},
                 dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunProcess({CliBinary(), "expert", "run", e, "--input", x, "-o", y}, dir.path());
#if defined(TRUSTMOE_HAVE_TORCH)
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("5 rows"), std::string::npos) << r.out;
  auto out = ReadFile(y, 1 << 20);
  ASSERT_TRUE(out.ok());
  auto parsed = edge::ParseSafetensors(AsBytes(*out));
  ASSERT_TRUE(parsed.ok());
  auto spec = edge::ValidateActivations(*parsed, 32, 5);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->rows, 5);

  // Width mismatch, an expert file as input, a bad device: clear errors, no output file.
  r = RunProcess({CliBinary(), "expert", "input", "--rows", "2", "--d-model", "31", "-o",
                  dir.Sub("x31.safetensors")},
                 dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const auto& [args, fragment] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--input", dir.Sub("x31.safetensors")}, "expected [rows, 32]"},
           {{"--input", e}, "trustmoe-activations/v1"},
           {{"--input", x, "--device", "tpu"}, "expected cpu, cuda or cuda:N"},
           {{"--input", x, "--compute-dtype", "f16"}, "f16 is not supported on the CPU"}}) {
    std::vector<std::string> cmd{CliBinary(), "expert", "run", e, "-o", dir.Sub("bad.safetensors")};
    cmd.insert(cmd.end(), args.begin(), args.end());
    r = RunProcess(cmd, dir.path());
    EXPECT_EQ(r.exit_code, 1) << fragment;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("bad.safetensors")));
#else
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("without libtorch"), std::string::npos) << r.err;
#endif
  r = RunProcess({CliBinary(), "expert", "new", "--arch", "relu", "--d-model", "4", "--d-ff", "4",
                  "-o", dir.Sub("bad.safetensors")},
                 dir.path());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("gelu_mlp or swiglu"), std::string::npos) << r.err;
}


// ---- expert call against an edge that lies ----

// An EdgeService that answers Forward with `output` and a commitment whose body the test
// chooses (signed by `key` for `chain_id`).
class FakeEdge final : public v1::EdgeService::Service {
 public:
  grpc::Status Forward(grpc::ServerContext*, const v1::ForwardRequest* request,
                       v1::CallResponse* response) override {
    ledger::ExpertResultBody body;
    body.kind = ledger::CallKind::kForward;
    body.job = request->job();
    body.step = request->step();
    body.expert_cid = request->expert_cid();
    body.input_cid = crypto::ComputeCid(AsBytes(request->input())).ToString();
    body.output_cid = crypto::ComputeCid(output).ToString();
    body.rows = 1;
    if (tamper) tamper(&body);
    ledger::Tx tx = ledger::MakeTx(chain_id, ledger::TxType::kExpertResult, key, 42, body.Encode());
    Bytes encoded = tx.Encode();
    const ledger::TxId id = pbft::ComputeTxId(encoded);
    response->set_output(output.data(), output.size());
    response->set_result_tx(encoded.data(), encoded.size());
    response->set_result_id(id.data(), id.size());
    return grpc::Status::OK;
  }

  Bytes output;
  std::string chain_id;
  crypto::PrivateKey key = ledger::testing::KeyFromByte(30);
  std::function<void(ledger::ExpertResultBody*)> tamper;
};

TEST(ExpertCallCommandTest, KeepsTheOutputOnlyWhenTheCommitmentMatches) {
  TempDir dir;
  ledger::testing::Validators validators;
  ledger::Genesis genesis;
  genesis.chain_id = "calltest";
  genesis.created_unix_ms = 1;
  genesis.f = 1;
  for (size_t i = 0; i < validators.keys.size(); ++i) {
    genesis.validators.push_back({"v" + std::to_string(i), validators.keys[i].public_key(),
                                  "127.0.0.1:" + std::to_string(7900 + i)});
  }
  genesis.admin_key = ledger::testing::KeyFromByte(9).public_key();
  WriteFileOrDie(dir.Sub("genesis.json"), genesis.ToJson());

  FakeEdge edge;
  edge.chain_id = genesis.chain_id;
  edge::HostTensor y{edge::DType::kF32, 1, 4, edge::FromFloats(edge::DType::kF32, std::vector<float>{1, 2, 3, 4})};
  edge.output = *edge::WriteActivations(y);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&edge);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_TRUE(server && port > 0);

  edge::HostTensor x{edge::DType::kF32, 1, 4, edge::FromFloats(edge::DType::kF32, std::vector<float>{0, 1, 0, 1})};
  WriteFileOrDie(dir.Sub("x.safetensors"), *edge::WriteActivations(x));
  const std::string cid = "sha256-tree:" + std::string(64, 'a');
  auto call = [&](const std::string& out) {
    return RunProcess({CliBinary(), "expert", "call", "--edge", "127.0.0.1:" + std::to_string(port),
                       "--cid", cid, "--input", dir.Sub("x.safetensors"), "-o", dir.Sub(out),
                       "--genesis", dir.Sub("genesis.json"), "--job", "j1", "--step", "3"},
                      dir.path());
  };
  ProcessResult r = call("ok.safetensors");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("commitment verified"), std::string::npos) << r.out;
  EXPECT_TRUE(std::filesystem::exists(dir.Sub("ok.safetensors")));

  // Each lie: a clear refusal, and the output is not kept.
  const std::vector<std::pair<std::function<void(ledger::ExpertResultBody*)>, std::string>> lies{
      {[](ledger::ExpertResultBody* b) { b->output_cid = "sha256-tree:" + std::string(64, 'b'); },
       "output CID"},
      {[](ledger::ExpertResultBody* b) { b->input_cid = "sha256-tree:" + std::string(64, 'c'); },
       "input CID"},
      {[](ledger::ExpertResultBody* b) { b->job = "other-job"; }, "job"},
      {[](ledger::ExpertResultBody* b) { b->step = 4; }, "step"},
      {[](ledger::ExpertResultBody* b) { b->expert_cid = "sha256-tree:" + std::string(64, 'd'); },
       "expert"},
  };
  int n = 0;
  for (const auto& [lie, fragment] : lies) {
    edge.tamper = lie;
    const std::string out = "lie" + std::to_string(n++) + ".safetensors";
    r = call(out);
    EXPECT_EQ(r.exit_code, 1) << fragment;
    EXPECT_NE(r.err.find("does not match the call"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir.Sub(out))) << fragment;
  }
  // A commitment signed for another chain.
  edge.tamper = nullptr;
  edge.chain_id = "otherchain";
  r = call("wrongchain.safetensors");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("commitment"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("wrongchain.safetensors")));
  server->Shutdown();
}

// ---- job, verdict and blacklist commands against running validators ----

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string NonceHex(uint64_t nonce) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(nonce));
  return buf;
}

// Four validators (the fixture's keys) in this process; an admin, a researcher and an edge key
// in PEM files; an expert published. Transactions the CLI does not make (results, votes) are
// built here and submitted with a ChainClient.
class OnlineLedgerTest : public ::testing::Test {
 protected:
  static constexpr char kOnlineChain[] = "cli-online";

  void SetUp() override {
    genesis_.chain_id = kOnlineChain;
    genesis_.created_unix_ms = kTime0;
    genesis_.f = 1;
    genesis_.admin_key = admin_.public_key();
    genesis_.params.view_change_timeout_ms = 2000;
    for (size_t i = 0; i < keys_.keys.size(); ++i) {
      genesis_.validators.push_back({"v" + std::to_string(i), keys_.keys[i].public_key(),
                                     "127.0.0.1:" + std::to_string(FreePort())});
    }
    ASSERT_TRUE(genesis_.Validate().ok());
    WriteFileOrDie(dir_.Sub("genesis.json"), genesis_.ToJson());
    WriteFileOrDie(dir_.Sub("admin.pem"), admin_.ToPem(), 0600);
    WriteFileOrDie(dir_.Sub("researcher.pem"), researcher_.ToPem(), 0600);
    WriteFileOrDie(dir_.Sub("edge.pub.pem"), edge_.public_key().ToPem());
    for (uint32_t i = 0; i < keys_.keys.size(); ++i) {
      validator::ValidatorConfig config;
      config.listen = genesis_.validators[i].endpoint;
      config.http_listen = "127.0.0.1:0";
      config.data_dir = data_dir(i);
      config.identity_key = "unused";
      config.genesis = "unused";
      config.peer_reconnect_min_ms = 20;
      config.peer_reconnect_max_ms = 200;
      config.drain_timeout_ms = 1000;
      auto v = validator::Validator::Start(config, genesis_, keys_.keys[i]);
      ASSERT_TRUE(v.ok()) << v.status().ToString();
      validators_.push_back(std::move(v).value());
    }
    chain::ChainClientOptions options;
    for (const auto& v : genesis_.validators) options.endpoints.push_back(v.endpoint);
    auto client = chain::ChainClient::Create(options, genesis_);
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    client_ = std::move(client).value();
    Commit(
        admin_, ledger::TxType::kRegisterNode,
        ledger::RegisterNode{researcher_.public_key(), ledger::NodeRole::kResearcher, "alice", ""}
            .Encode());
    Commit(
        admin_, ledger::TxType::kRegisterNode,
        ledger::RegisterNode{edge_.public_key(), ledger::NodeRole::kEdge, "edge-1", ""}.Encode());
    Commit(researcher_, ledger::TxType::kPublishExpert,
           ledger::PublishExpert{Cid('e'), "moe/expert-0", "swiglu", 4096}.Encode());
  }

  void TearDown() override {
    for (auto& v : validators_) v->Stop();
  }

  std::string data_dir(uint32_t i) const { return dir_.Sub("v" + std::to_string(i)); }
  static std::string Cid(char c) { return "sha256-tree:" + std::string(64, c); }

  // Signs, submits and waits for the commit; the transaction and its height.
  std::pair<ledger::Tx, uint64_t> Submit(const crypto::PrivateKey& key, ledger::TxType type,
                                         Bytes body) {
    ledger::Tx tx = ledger::MakeTx(kOnlineChain, type, key, ledger::FreshNonce(), std::move(body));
    auto result = client_->Submit(tx.Encode());
    if (!result.ok()) return {tx, 0};
    return {tx, result->height};
  }
  uint64_t Commit(const crypto::PrivateKey& key, ledger::TxType type, Bytes body) {
    auto [tx, height] = Submit(key, type, std::move(body));
    EXPECT_GT(height, 0u) << ledger::TxTypeName(static_cast<uint8_t>(type));
    return height;
  }

  // An expert result of the edge; backward when `backward`.
  ledger::Tx Result(const std::string& job, uint64_t step, bool backward = false) {
    ledger::ExpertResultBody body;
    body.kind = backward ? ledger::CallKind::kBackward : ledger::CallKind::kForward;
    body.job = job;
    body.step = step;
    body.expert_cid = Cid('e');
    body.input_cid = Cid('a');
    if (backward) body.grad_output_cid = Cid('c');
    body.output_cid = Cid('b');
    body.rows = 4 + step;
    body.dtype = ledger::ComputeDType::kBF16;
    body.device = "cuda:0";
    auto [tx, height] = Submit(edge_, ledger::TxType::kExpertResult, body.Encode());
    EXPECT_GT(height, 0u);
    return tx;
  }

  // Votes of `voters` on `result`; the height of the last one.
  uint64_t Vote(const std::vector<uint32_t>& voters, const ledger::Tx& result,
                ledger::RejectReason reason = ledger::RejectReason::kNone,
                const std::string& detail = "") {
    uint64_t height = 0;
    for (uint32_t i : voters) {
      ledger::VoteBody body;
      body.edge = result.signer;
      body.result_nonce = result.nonce;
      body.verdict = reason == ledger::RejectReason::kNone ? ledger::Verdict::kAccepted
                                                           : ledger::Verdict::kRejected;
      body.reason = reason;
      body.detail = detail;
      height = Commit(keys_.keys[i], ledger::TxType::kVote, body.Encode());
    }
    return height;
  }

  std::vector<std::string> Online(std::vector<std::string> args) const {
    std::string endpoints;
    for (const auto& v : genesis_.validators)
      endpoints += (endpoints.empty() ? "" : ",") + v.endpoint;
    std::vector<std::string> out = {args[0], "--genesis", dir_.Sub("genesis.json"), "--validator",
                                    endpoints};
    out.insert(out.end(), args.begin() + 1, args.end());
    return out;
  }
  ProcessResult Run(std::vector<std::string> args) { return Cli(dir_, Online(std::move(args))); }

  // One accepted, one rejected (it blacklists the edge) and one pending call of "train-1",
  // and an accepted call of "other".
  void MakeJob() {
    r1_ = Result("train-1", 1);
    r2_ = Result("train-1", 2, /*backward=*/true);
    r3_ = Result("train-1", 3);
    other_ = Result("other", 1);
    accepted_at_ = Vote({0, 1, 2}, r1_);
    other_at_ = Vote({0, 1, 2}, other_);
    Vote({3}, r3_);
    rejected_at_ = Vote({1, 2, 3}, r2_, ledger::RejectReason::kMismatch, "row 3: error 0.2");
  }

  TempDir dir_;
  Validators keys_;
  crypto::PrivateKey admin_ = KeyFromByte(9);
  crypto::PrivateKey researcher_ = KeyFromByte(20);
  crypto::PrivateKey edge_ = KeyFromByte(21);
  ledger::Genesis genesis_;
  std::vector<std::unique_ptr<validator::Validator>> validators_;
  std::unique_ptr<chain::ChainClient> client_;
  ledger::Tx r1_, r2_, r3_, other_;
  uint64_t accepted_at_ = 0, other_at_ = 0, rejected_at_ = 0;
};

TEST_F(OnlineLedgerTest, LedgerJobListsEveryCallWithItsVerdict) {
  MakeJob();
  ProcessResult r = Run({"ledger", "job", "train-1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("job train-1: 3 calls: 1 accepted, 1 rejected, 1 pending"),
            std::string::npos)
      << r.out;
  const std::string edge_short = edge_.public_key().Hex().substr(0, 16);
  const size_t at1 = r.out.find(NonceHex(r1_.nonce));
  const size_t at2 = r.out.find(NonceHex(r2_.nonce));
  const size_t at3 = r.out.find(NonceHex(r3_.nonce));
  ASSERT_NE(at1, std::string::npos) << r.out;
  ASSERT_NE(at2, std::string::npos) << r.out;
  ASSERT_NE(at3, std::string::npos) << r.out;
  EXPECT_LT(at1, at2) << "in step order";
  EXPECT_LT(at2, at3) << "in step order";
  auto line_of = [&](size_t at) {
    size_t begin = r.out.rfind('\n', at) + 1;
    return r.out.substr(begin, r.out.find('\n', at) - begin);
  };
  EXPECT_THAT(line_of(at1), ::testing::StartsWith(edge_short));
  EXPECT_THAT(line_of(at1), ::testing::HasSubstr("accepted"));
  EXPECT_THAT(line_of(at1), ::testing::HasSubstr("bf16/cuda:0"));
  EXPECT_THAT(line_of(at1), ::testing::HasSubstr(" " + std::to_string(accepted_at_) + " "));
  EXPECT_THAT(line_of(at2), ::testing::HasSubstr("backward"));
  EXPECT_THAT(line_of(at2), ::testing::HasSubstr("rejected"));
  EXPECT_THAT(line_of(at2), ::testing::HasSubstr("mismatch: row 3: error 0.2"));
  EXPECT_THAT(line_of(at3), ::testing::HasSubstr("pending"));
  EXPECT_EQ(r.out.find(NonceHex(other_.nonce)), std::string::npos) << "another job's call";

  r = Run({"ledger", "job", "train-1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = ParseJson(r);
  EXPECT_EQ(j["results"], 3);
  EXPECT_EQ(j["accepted"], 1);
  EXPECT_EQ(j["rejected"], 1);
  EXPECT_EQ(j["pending"], 1);
  ASSERT_EQ(j["calls"].size(), 3u);
  const nlohmann::json& c1 = j["calls"][0];
  EXPECT_EQ(c1["edge"], edge_.public_key().Hex());
  EXPECT_EQ(c1["nonce"], r1_.nonce);
  EXPECT_EQ(c1["status"], "accepted");
  EXPECT_EQ(c1["verdict_height"], accepted_at_);
  EXPECT_EQ(c1["rows"], 5);
  ASSERT_EQ(c1["votes"].size(), 3u);
  EXPECT_EQ(c1["votes"][2]["name"], "v2");
  const nlohmann::json& c2 = j["calls"][1];
  EXPECT_EQ(c2["kind"], "backward");
  EXPECT_EQ(c2["grad_output"], Cid('c'));
  EXPECT_EQ(c2["reason"], "mismatch: row 3: error 0.2");
  EXPECT_EQ(c2["verdict_height"], rejected_at_);
  EXPECT_EQ(c2["votes"][0]["reason"], "mismatch");
  const nlohmann::json& c3 = j["calls"][2];
  EXPECT_EQ(c3["status"], "pending");
  EXPECT_EQ(c3["verdict_height"], 0);
  ASSERT_EQ(c3["votes"].size(), 1u);
  EXPECT_EQ(c3["votes"][0]["validator"], 3);

  r = Run({"ledger", "job", "no-such-job"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("0 calls: 0 accepted, 0 rejected, 0 pending"), std::string::npos) << r.out;
  ExpectCleanError(Run({"ledger", "job", ""}), "JOB must not be empty");
  ExpectCleanError(Run({"ledger", "job", std::string(ledger::kJobBytesMax + 1, 'j')}),
                   "at most 128");

  // Offline, from a validator's data directory, the same listing.
  for (auto& v : validators_) v->Stop();
  r = Cli(dir_, {"ledger", "--genesis", dir_.Sub("genesis.json"), "--data-dir", data_dir(1), "job",
                 "train-1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json offline = ParseJson(r);
  EXPECT_EQ(offline["calls"], j["calls"]);
}

TEST_F(OnlineLedgerTest, LedgerVerdictsReplaysFiltersAndFollows) {
  MakeJob();
  ProcessResult r = Run({"ledger", "verdicts"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const size_t at1 = r.out.find(NonceHex(r1_.nonce));
  const size_t at_other = r.out.find(NonceHex(other_.nonce));
  const size_t at2 = r.out.find(NonceHex(r2_.nonce));
  ASSERT_NE(at1, std::string::npos) << r.out;
  ASSERT_NE(at_other, std::string::npos) << r.out;
  ASSERT_NE(at2, std::string::npos) << r.out;
  EXPECT_LT(at1, at_other) << "in the order of the verdicts' blocks";
  EXPECT_LT(at_other, at2);
  EXPECT_EQ(r.out.find(NonceHex(r3_.nonce)), std::string::npos) << "r3 is pending";
  EXPECT_NE(r.out.find("mismatch: row 3: error 0.2"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("3 verdicts"), std::string::npos) << r.err;

  auto nonces = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"ledger", "verdicts", "--json"});
    ProcessResult run = Run(args);
    EXPECT_EQ(run.exit_code, 0) << run.err;
    std::vector<uint64_t> out;
    std::istringstream lines(run.out);
    for (std::string line; std::getline(lines, line);) {
      out.push_back(nlohmann::json::parse(line)["nonce"].get<uint64_t>());
    }
    return out;
  };
  using V = std::vector<uint64_t>;
  EXPECT_EQ(nonces({"--job", "train-1"}), (V{r1_.nonce, r2_.nonce}));
  EXPECT_EQ(nonces({"--job", "other"}), (V{other_.nonce}));
  EXPECT_EQ(nonces({"--from-height", std::to_string(other_at_)}), (V{other_.nonce, r2_.nonce}));
  EXPECT_EQ(nonces({"--edge", dir_.Sub("edge.pub.pem"), "--job", "train-1"}),
            (V{r1_.nonce, r2_.nonce}));
  EXPECT_EQ(nonces({"--edge", researcher_.public_key().Hex()}), V{});
  EXPECT_EQ(nonces({"--from-height", "100000"}), V{});

  // --follow: replays from --from-height, then prints the verdict made after it started.
  const uint64_t from = rejected_at_ + 1;
  auto follower = std::async(std::launch::async, [&] {
    return Run({"ledger", "verdicts", "--follow", "--json", "--count", "1", "--from-height",
                std::to_string(from)});
  });
  const uint64_t r3_at = Vote({0, 1}, r3_);
  ASSERT_EQ(follower.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  r = follower.get();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json verdict = nlohmann::json::parse(r.out);
  EXPECT_EQ(verdict["nonce"], r3_.nonce);
  EXPECT_EQ(verdict["status"], "accepted");
  EXPECT_EQ(verdict["verdict_height"], r3_at);
  EXPECT_EQ(verdict["votes"].size(), 3u);

  ExpectCleanError(Run({"ledger", "verdicts", "--from-height", "0"}), "start at 1");
  ExpectCleanError(Run({"ledger", "verdicts", "--edge", "zz"}), "--edge");
  ExpectCleanError(Run({"ledger", "verdicts", "--job", std::string(200, 'j')}), "at most 128");
  ExpectCleanError(Cli(dir_, {"ledger", "--genesis", dir_.Sub("genesis.json"), "--data-dir",
                              data_dir(0), "verdicts"}),
                   "--validator");
}

TEST_F(OnlineLedgerTest, NodeLiftClearsABlacklisting) {
  // One REJECTED mismatch verdict is a fault; the genesis fault_threshold (1) blacklists.
  const ledger::Tx r1 = Result("train-1", 1);
  Vote({0, 1, 2}, r1, ledger::RejectReason::kMismatch, "row 0: error 0.9");
  auto edge_entry = [&]() {
    ProcessResult nodes = Run({"ledger", "nodes", "--json"});
    EXPECT_EQ(nodes.exit_code, 0) << nodes.err;
    for (const auto& n : ParseJson(nodes)) {
      if (n["key"] == edge_.public_key().Hex()) return n;
    }
    ADD_FAILURE() << "the edge is not listed";
    return nlohmann::json();
  };
  nlohmann::json before = edge_entry();
  EXPECT_EQ(before["blacklisted"], true);
  EXPECT_EQ(before["faults"], 1);
  EXPECT_NE(before["blacklist_reason"].get<std::string>().find("mismatch"), std::string::npos);
  ledger::ExpertResultBody body;
  body.job = "train-1";
  body.expert_cid = Cid('e');
  body.input_cid = Cid('a');
  body.output_cid = Cid('b');
  body.rows = 1;
  auto refused = client_->Submit(ledger::MakeTx(kOnlineChain, ledger::TxType::kExpertResult, edge_,
                                                ledger::FreshNonce(), body.Encode())
                                     .Encode());
  EXPECT_EQ(refused.status().code(), StatusCode::kPermissionDenied) << refused.status().ToString();

  // Refused before anything is sent: a key that is not the admin's, a bad node, no reason.
  const std::string edge_pub = dir_.Sub("edge.pub.pem");
  ExpectCleanError(Run({"node", "lift", "--key", dir_.Sub("researcher.pem"), "--node", edge_pub,
                        "--reason", "fixed"}),
                   "genesis admin key");
  ExpectCleanError(Run({"node", "lift", "--key", dir_.Sub("admin.pem"), "--node", "abc123",
                        "--reason", "fixed"}),
                   "6 hex digits, expected 64");
  ExpectCleanError(Run({"node", "lift", "--key", dir_.Sub("admin.pem"), "--node",
                        dir_.Sub("admin.pem"), "--reason", "fixed"}),
                   "private key");
  ExpectCleanError(
      Run({"node", "lift", "--key", dir_.Sub("admin.pem"), "--node", edge_pub, "--reason", ""}),
      "--reason must not be empty");
  ExpectCleanError(Run({"node", "lift", "--key", dir_.Sub("admin.pem"), "--node", edge_pub,
                        "--reason", std::string(ledger::kLiftReasonBytesMax + 1, 'r')}),
                   "at most 256");
  ProcessResult r =
      Cli(dir_, Online({"node", "lift", "--key", dir_.Sub("admin.pem"), "--node", edge_pub}));
  EXPECT_EQ(r.exit_code, 106) << "CLI11's missing-option code\n" << r.err;
  // The chain refuses a lift signed by another key on its own, too.
  auto by_researcher = Submit(researcher_, ledger::TxType::kLiftBlacklist,
                              ledger::LiftBlacklist{edge_.public_key(), "fixed"}.Encode());
  EXPECT_EQ(by_researcher.second, 0u);
  EXPECT_EQ(edge_entry()["blacklisted"], true);

  r = Run({"node", "lift", "--key", dir_.Sub("admin.pem"), "--node", edge_pub, "--reason",
           "host re-imaged", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json lifted = ParseJson(r);
  EXPECT_EQ(lifted["type"], "lift-blacklist");
  EXPECT_EQ(lifted["verified"], true);
  nlohmann::json after = edge_entry();
  EXPECT_EQ(after["blacklisted"], false);
  EXPECT_EQ(after["faults"], 0);
  EXPECT_EQ(after["blacklist_reason"], "");
  EXPECT_EQ(after["rejected"], 1) << "the record of the rejection stays";
  // The lift is on the chain with its reason; the edge submits results again.
  r = Run({"ledger", "block", std::to_string(lifted["height"].get<uint64_t>()), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json block = ParseJson(r);
  ASSERT_EQ(block["txs"].size(), 1u);
  EXPECT_EQ(block["txs"][0]["body"]["reason"], "host re-imaged");
  EXPECT_EQ(block["txs"][0]["body"]["key"], edge_.public_key().Hex());
  EXPECT_EQ(block["txs"][0]["signer_is"], "admin");
  Result("train-1", 2);

  // A second lift: the chain says it is not blacklisted.
  ExpectCleanError(Run({"node", "lift", "--key", dir_.Sub("admin.pem"), "--node",
                        edge_.public_key().Hex(), "--reason", "again"}),
                   "is not blacklisted");
}

// ---- job commands: the gate's JobService ----

constexpr char kJobChain[] = "cli-jobs";
// A valid spec with a comment: the exact bytes, comment included, are signed and sent.
constexpr char kJobSpec[] =
    "# a quick run\n[job]\nname = \"cli-job\"\n[training]\ntrain_limit = 64   # items\n";

// A JobService in this process that checks each request's RequestAuth as a gate must (the
// researcher, the signature over ledger::GateRequestMessage for this chain, a fresh unused
// nonce) and answers from a script.
class FakeGate final : public v1::JobService::Service {
 public:
  FakeGate(std::string chain_id, crypto::PublicKey researcher)
      : chain_id_(std::move(chain_id)), researcher_(researcher) {}

  grpc::Status SubmitJob(grpc::ServerContext*, const v1::SubmitJobRequest* request,
                         v1::JobInfo* info) override {
    uint64_t nonce = 0;
    grpc::Status checked = Check("SubmitJob", request->spec_toml(), request->auth(), &nonce);
    if (!checked.ok()) return checked;
    std::lock_guard<std::mutex> lock(mu_);
    spec_toml_ = request->spec_toml();
    job_id_ = ledger::JobIdFor(researcher_, nonce, spec_toml_);
    *info = InfoLocked();
    info->mutable_progress()->set_state("queued");
    return grpc::Status::OK;
  }
  grpc::Status GetJob(grpc::ServerContext*, const v1::JobRequest* request,
                      v1::JobInfo* info) override {
    grpc::Status checked = CheckJob("GetJob", *request);
    if (!checked.ok()) return checked;
    std::lock_guard<std::mutex> lock(mu_);
    *info = InfoLocked();
    return grpc::Status::OK;
  }
  grpc::Status WatchJob(grpc::ServerContext*, const v1::JobRequest* request,
                        grpc::ServerWriter<v1::JobProgress>* writer) override {
    grpc::Status checked = CheckJob("WatchJob", *request);
    if (!checked.ok()) return checked;
    std::vector<v1::JobProgress> script;
    {
      std::lock_guard<std::mutex> lock(mu_);
      script = script_;
    }
    for (v1::JobProgress& p : script) {
      p.set_job_id(request->job_id());
      if (!writer->Write(p)) break;
    }
    return grpc::Status::OK;
  }
  grpc::Status CancelJob(grpc::ServerContext*, const v1::JobRequest* request,
                         v1::JobInfo* info) override {
    grpc::Status checked = CheckJob("CancelJob", *request);
    if (!checked.ok()) return checked;
    std::lock_guard<std::mutex> lock(mu_);
    *info = InfoLocked();
    info->mutable_progress()->set_state("cancelled");
    return grpc::Status::OK;
  }
  grpc::Status ListJobs(grpc::ServerContext*, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override {
    uint64_t nonce = 0;
    grpc::Status checked = Check("ListJobs", "", request->auth(), &nonce);
    if (!checked.ok()) return checked;
    std::lock_guard<std::mutex> lock(mu_);
    if (!job_id_.empty()) *response->add_jobs() = InfoLocked();
    return grpc::Status::OK;
  }

  // The messages WatchJob sends, and the job's last state (GetJob, ListJobs).
  void Script(std::vector<v1::JobProgress> script, std::string manifest_cid = "") {
    std::lock_guard<std::mutex> lock(mu_);
    script_ = std::move(script);
    manifest_cid_ = std::move(manifest_cid);
  }
  std::string job_id() const {
    std::lock_guard<std::mutex> lock(mu_);
    return job_id_;
  }
  std::string spec_toml() const {
    std::lock_guard<std::mutex> lock(mu_);
    return spec_toml_;
  }
  std::vector<std::string> methods() const {
    std::lock_guard<std::mutex> lock(mu_);
    return methods_;
  }

 private:
  grpc::Status Check(std::string_view method, const std::string& payload,
                     const v1::RequestAuth& auth, uint64_t* nonce) {
    auto key = crypto::PublicKey::FromBytes(AsBytes(auth.researcher()));
    if (!key.ok() || *key != researcher_) {
      return {grpc::StatusCode::PERMISSION_DENIED, "not a registered researcher"};
    }
    Bytes message = ledger::GateRequestMessage(chain_id_, method, auth.nonce(), AsBytes(payload));
    if (!key->Verify(message, AsBytes(auth.signature()))) {
      return {grpc::StatusCode::UNAUTHENTICATED, "bad signature"};
    }
    const int64_t now_ns = SystemClock::Get()->NowUnixMs() * 1'000'000;
    const int64_t skew_ns = static_cast<int64_t>(auth.nonce()) - now_ns;
    if (skew_ns > 300'000'000'000 || skew_ns < -300'000'000'000) {
      return {grpc::StatusCode::UNAUTHENTICATED, "nonce more than 5 minutes off"};
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (!nonces_.insert(auth.nonce()).second) {
      return {grpc::StatusCode::UNAUTHENTICATED, "nonce already used"};
    }
    methods_.push_back(std::string(method));
    *nonce = auth.nonce();
    return grpc::Status::OK;
  }
  grpc::Status CheckJob(std::string_view method, const v1::JobRequest& request) {
    uint64_t nonce = 0;
    grpc::Status checked = Check(method, request.job_id(), request.auth(), &nonce);
    if (!checked.ok()) return checked;
    if (request.job_id() != job_id()) {
      return {grpc::StatusCode::NOT_FOUND, "job " + request.job_id() + " is not on this gate"};
    }
    return grpc::Status::OK;
  }
  v1::JobInfo InfoLocked() const {
    v1::JobInfo info;
    info.set_job_id(job_id_);
    info.set_name("cli-job");
    info.set_kind("training");
    info.set_researcher(researcher_.bytes().data(), researcher_.bytes().size());
    info.set_spec_toml(spec_toml_);
    info.set_manifest_cid(manifest_cid_);
    info.set_submitted_unix_ms(kTime0);
    if (!script_.empty()) *info.mutable_progress() = script_.back();
    info.mutable_progress()->set_job_id(job_id_);
    return info;
  }

  const std::string chain_id_;
  const crypto::PublicKey researcher_;
  mutable std::mutex mu_;
  std::string job_id_;
  std::string spec_toml_;
  std::string manifest_cid_;
  std::vector<v1::JobProgress> script_;
  std::set<uint64_t> nonces_;
  std::vector<std::string> methods_;
};

v1::JobProgress Progress(const std::string& state, uint64_t step, double loss, double acc) {
  v1::JobProgress p;
  p.set_state(state);
  p.set_step(step);
  p.set_steps_total(20);
  p.set_epoch(1);
  p.set_loss(loss);
  p.set_train_accuracy(acc);
  p.set_test_accuracy(-1);
  p.set_verified(step * 4);
  p.set_eta_seconds(state == "running" ? 130 : -1);
  return p;
}

// A researcher key, a genesis and a spec in files; a fake gate on a loopback port. The CLI runs
// with TRUSTMOE_* cleared, so only the flags a test passes count.
class JobCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ledger::Genesis genesis;
    genesis.chain_id = kJobChain;
    genesis.created_unix_ms = kTime0;
    genesis.f = 1;
    genesis.admin_key = KeyFromByte(9).public_key();
    for (size_t i = 0; i < validators_.keys.size(); ++i) {
      genesis.validators.push_back({"v" + std::to_string(i), validators_.keys[i].public_key(),
                                    "127.0.0.1:" + std::to_string(7500 + i)});
    }
    ASSERT_TRUE(genesis.Validate().ok());
    WriteFileOrDie(dir_.Sub("genesis.json"), genesis.ToJson());
    genesis.chain_id = "another-chain";
    WriteFileOrDie(dir_.Sub("other-genesis.json"), genesis.ToJson());
    WriteFileOrDie(dir_.Sub("researcher.pem"), researcher_.ToPem(), 0600);
    WriteFileOrDie(dir_.Sub("spec.toml"), std::string(kJobSpec));
    auto server = net::StartServer("127.0.0.1:0", net::TransportConfig{}, {&gate_});
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }
  void TearDown() override {
    if (server_.server) server_.server->Shutdown();
  }

  std::string gate() const { return "127.0.0.1:" + std::to_string(server_.bound_port); }

  // `trustmoe job <args>` with no TRUSTMOE_* variables.
  ProcessResult Bare(std::vector<std::string> args) {
    std::vector<std::string> argv = {
        "/usr/bin/env",     "-u", "TRUSTMOE_GATE",  "-u",        "TRUSTMOE_KEY", "-u",
        "TRUSTMOE_GENESIS", "-u", "TRUSTMOE_STORE", CliBinary(), "job"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProcess(argv, dir_.path(), std::chrono::seconds(60));
  }
  // The same with --gate, --key and --genesis.
  ProcessResult Job(std::vector<std::string> args) {
    args.insert(args.end(), {"--gate", gate(), "--key", dir_.Sub("researcher.pem"), "--genesis",
                             dir_.Sub("genesis.json")});
    return Bare(std::move(args));
  }

  TempDir dir_;
  Validators validators_;
  crypto::PrivateKey researcher_ = KeyFromByte(20);
  FakeGate gate_{kJobChain, KeyFromByte(20).public_key()};
  net::StartedServer server_;
};

TEST_F(JobCommandTest, SubmitSignsTheFileAsItIsAndPrintsOnlyTheJobId) {
  ProcessResult r = Job({"submit", dir_.Sub("spec.toml")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(gate_.job_id().size(), 32u);
  EXPECT_EQ(r.out, gate_.job_id() + "\n") << "scripts capture the id: nothing else on stdout";
  EXPECT_EQ(gate_.spec_toml(), kJobSpec) << "the exact text, comments included";
  EXPECT_EQ(gate_.methods(), std::vector<std::string>{"SubmitJob"});

  // Signed for another chain, the request does not verify at the gate: the error names it.
  std::vector<std::string> args = {
      "submit", dir_.Sub("spec.toml"),      "--gate",    gate(),
      "--key",  dir_.Sub("researcher.pem"), "--genesis", dir_.Sub("other-genesis.json")};
  r = Bare(args);
  ExpectCleanError(r, "gate " + gate() + ": bad signature");
  EXPECT_NE(r.err.find("UNAUTHENTICATED"), std::string::npos) << r.err;
  // Another researcher's key.
  WriteFileOrDie(dir_.Sub("mallory.pem"), KeyFromByte(33).ToPem(), 0600);
  args[5] = dir_.Sub("mallory.pem");
  args[7] = dir_.Sub("genesis.json");
  ExpectCleanError(Bare(args), "not a registered researcher");
}

TEST_F(JobCommandTest, WatchExitsZeroOnlyWhenTheJobCompleted) {
  ASSERT_EQ(Job({"submit", dir_.Sub("spec.toml")}).exit_code, 0);
  const std::string id = gate_.job_id();
  v1::JobProgress done = Progress("completed", 20, 0.3812, 0.9);
  done.set_test_accuracy(0.864);
  done.set_rejected(1);
  const std::string manifest = "sha256-tree:" + std::string(64, 'c');
  gate_.Script({Progress("queued", 0, 0, 0), Progress("running", 10, 0.6123, 0.781),
                Progress("evaluating", 20, 0.4, 0.85), done},
               manifest);
  ProcessResult r = Job({"watch", id});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Not a terminal: one line per change of state or 5 % of the steps.
  EXPECT_NE(r.err.find("queued\n"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("[step 10/20 50%] epoch 1 loss 0.6123 acc 78.1% verified 40 rejected 0 "
                       "ETA 2m10s\n"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("evaluating [step 20/20 100%]"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("job " + id +
                       " completed: test accuracy 86.4%, loss 0.3812, 20 steps, verified 80, "
                       "rejected 1\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("manifest " + manifest), std::string::npos) << r.out;

  // Failed and cancelled jobs exit 1 with their detail.
  v1::JobProgress failed = Progress("failed", 10, 0.6, 0.7);
  failed.set_detail("no edge holds expert 3");
  gate_.Script({Progress("running", 10, 0.6, 0.7), failed});
  r = Job({"watch", id});
  ExpectCleanError(r, "job " + id + " failed: no edge holds expert 3");
  EXPECT_NE(r.out.find("job " + id + " failed: no edge holds expert 3"), std::string::npos);
  v1::JobProgress cancelled = Progress("cancelled", 3, 0.9, 0.4);
  gate_.Script({cancelled});
  ExpectCleanError(Job({"watch", id}), "job " + id + " cancelled");

  // A stream that ends before the job did is an error, not a success.
  gate_.Script({Progress("running", 10, 0.6, 0.7)});
  ExpectCleanError(Job({"watch", id}), "ended before the job did");

  // submit --watch: the id first, then the outcome.
  gate_.Script({Progress("running", 10, 0.6, 0.7), done});
  r = Job({"submit", dir_.Sub("spec.toml"), "--watch"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind(gate_.job_id() + "\n", 0), 0u) << r.out;
  EXPECT_NE(r.out.find(" completed: test accuracy 86.4%"), std::string::npos) << r.out;
}

TEST_F(JobCommandTest, ListCancelAndResult) {
  ASSERT_EQ(Job({"submit", dir_.Sub("spec.toml")}).exit_code, 0);
  const std::string id = gate_.job_id();
  auto store = storage::testing::StoreProcess::Start();
  ASSERT_NE(store, nullptr);
  const std::string manifest_json = "{\"format\": \"trustmoe-model-manifest/v1\"}\n";
  auto put = store->Client()->Put(AsBytes(manifest_json));
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  v1::JobProgress done = Progress("completed", 20, 0.3812, 0.9);
  done.set_test_accuracy(0.864);
  gate_.Script({done}, put->cid.ToString());

  ProcessResult r = Job({"list", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json jobs = ParseJson(r);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0]["job_id"], id);
  EXPECT_EQ(jobs[0]["researcher"], researcher_.public_key().Hex());
  EXPECT_EQ(jobs[0]["progress"]["state"], "completed");
  EXPECT_EQ(jobs[0]["spec_toml"], kJobSpec);
  r = Job({"list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(id), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("86.4%"), std::string::npos) << r.out;

  r = Job({"result", id});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("state       completed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("test acc    86.4%"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("manifest    " + put->cid.ToString()), std::string::npos) << r.out;
  // -o downloads the manifest from the store, verified against its CID.
  r = Job({"result", id, "-o", dir_.Sub("manifest.json"), "--store", store->endpoint(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseJson(r)["output_file"], dir_.Sub("manifest.json"));
  EXPECT_EQ(ReadText(dir_.Sub("manifest.json")), manifest_json);

  r = Job({"cancel", id});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "job " + id + " cancelled\n");

  // The gate's refusals name the gate; a malformed id is refused before any call.
  const std::string unknown(32, 'a');
  r = Job({"cancel", unknown});
  ExpectCleanError(r, "gate " + gate() + ": job " + unknown + " is not on this gate");
  EXPECT_NE(r.err.find("NOT_FOUND"), std::string::npos) << r.err;
  const size_t calls = gate_.methods().size();
  ExpectCleanError(Job({"result", "NOT-AN-ID"}), "not lowercase hex");
  EXPECT_EQ(gate_.methods().size(), calls);
}

TEST_F(JobCommandTest, AnUnreachableGateIsNamed) {
  const std::string closed = "127.0.0.1:" + std::to_string(FreePort());
  ProcessResult r = Bare({"list", "--gate", closed, "--key", dir_.Sub("researcher.pem"),
                          "--genesis", dir_.Sub("genesis.json"), "--timeout-ms", "5000"});
  ExpectCleanError(r, "gate " + closed);
  EXPECT_NE(r.err.find("UNAVAILABLE"), std::string::npos) << r.err;
}

TEST_F(JobCommandTest, AMalformedSpecFailsWithFileAndLineBeforeAnyNetworkCall) {
  // A listening socket stands for the gate: nothing may connect to it.
  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(listener, 16), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string listening = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));

  // Out-of-range values are named by field (job_spec.h checks them after reading the file).
  const std::pair<std::string, std::string> cases[] = {
      {"[job]\nname = \"j\"\n[model]\nexprts = 4\n", ":4: unknown key 'exprts'"},
      {"[job]\nname = 7\n", ":2: 'job.name' must be a string"},
      {"[job\nname = \"j\"\n", ":1"},  // not TOML
      {"[job]\nname = \"j\"\n[model]\nexperts = 300\n", ": job spec: model.experts"},
      {"[job]\nname = \"j\"\n[model]\nexperts = 4\ntop_k = 5\n", ": job spec: model.top_k"},
  };
  for (const auto& [text, line] : cases) {
    const std::string spec = dir_.Sub("bad.toml");
    WriteFileOrDie(spec, text);
    // Neither the key nor the genesis exists: the spec is checked before they are read.
    ProcessResult r = Bare({"submit", spec, "--gate", listening, "--key", dir_.Sub("no.pem"),
                            "--genesis", dir_.Sub("no.json")});
    ExpectCleanError(r, spec + line);
    EXPECT_EQ(r.out, "") << text;
  }
  ExpectCleanError(Bare({"submit", dir_.Sub("missing.toml"), "--gate", listening}), "missing.toml");
  sockaddr_in peer{};
  socklen_t peer_len = sizeof(peer);
  EXPECT_LT(::accept(listener, reinterpret_cast<sockaddr*>(&peer), &peer_len), 0)
      << "the CLI connected to the gate";
  EXPECT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK) << errno;
  ::close(listener);
  EXPECT_TRUE(gate_.methods().empty());
}

TEST_F(JobCommandTest, MissingGateKeyOrGenesisIsNamed) {
  const std::string spec = dir_.Sub("spec.toml");
  ExpectCleanError(Bare({"submit", spec}), "pass --gate host:port (or set TRUSTMOE_GATE)");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"watch", std::string(32, 'a')}, std::vector<std::string>{"list"},
        std::vector<std::string>{"cancel", std::string(32, 'a')},
        std::vector<std::string>{"result", std::string(32, 'a')}}) {
    ExpectCleanError(Bare(args), "--gate");
  }
  ExpectCleanError(Bare({"submit", spec, "--gate", gate()}), "--key FILE or set TRUSTMOE_KEY");
  ExpectCleanError(Bare({"submit", spec, "--gate", gate(), "--key", dir_.Sub("no.pem")}),
                   "researcher key");
  ExpectCleanError(Bare({"submit", spec, "--gate", gate(), "--key", dir_.Sub("researcher.pem")}),
                   "--genesis FILE (or set TRUSTMOE_GENESIS)");
  // TRUSTMOE_GATE stands for --gate.
  ProcessResult r = RunProcess(
      {"/usr/bin/env", "-u", "TRUSTMOE_KEY", "TRUSTMOE_GATE=" + gate(), CliBinary(), "job", "list"},
      dir_.path(), std::chrono::seconds(60));
  ExpectCleanError(r, "TRUSTMOE_KEY");
  EXPECT_TRUE(gate_.methods().empty());
}

TEST_F(JobCommandTest, UnknownFlagsAndMissingArgumentsAreUsageErrors) {
  const std::vector<std::string> cases[] = {
      {"submit", dir_.Sub("spec.toml"), "--bogus"},
      {"list", "--watch"},
      {"watch"},
      {"cancel"},
      {"result"},
      {"frobnicate"},
      {},
      {"result", std::string(32, 'a'), "--out"},
  };
  for (const std::vector<std::string>& args : cases) {
    std::string joined;
    for (const std::string& a : args) joined += a + " ";
    ProcessResult r = Bare(args);
    EXPECT_NE(r.exit_code, 0) << joined;
    EXPECT_EQ(r.signal, 0) << joined;
    EXPECT_FALSE(r.err.empty()) << joined;
    EXPECT_EQ(r.err.find("trustmoe: error:"), std::string::npos)
        << joined << ": a usage error, not a failed command: " << r.err;
  }
  EXPECT_NE(Bare({"submit", dir_.Sub("spec.toml"), "--bogus"}).err.find("--bogus"),
            std::string::npos);
  EXPECT_TRUE(gate_.methods().empty());
}

}  // namespace
}  // namespace trustmoe::cli
