// trustmoe genesis | ledger head/blocks/watch/block/tx/verify/proof/nodes/experts/models/job/
// verdicts | node register/lift | expert publish | model publish (docs/auditor.md,
// docs/operator.md, docs/formats/genesis.md).
//
// Everything read from the chain is checked against the genesis file the user holds: online
// through chain::ChainClient, offline by opening a copy of a validator's ledger read-only.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include "chain/client/chain_client.h"
#include "chain/ledger/app.h"
#include "chain/ledger/genesis.h"
#include "chain/ledger/job.h"
#include "chain/ledger/ledger_store.h"
#include "chain/ledger/replay.h"
#include "chain/ledger/report.h"
#include "chain/ledger/result.h"
#include "chain/ledger/state.h"
#include "chain/ledger/tx.h"
#include "chain/ledger/update.h"
#include "chain/ledger/verdict.h"
#include "cli/cli.h"
#include "common/files.h"
#include "crypto/cid.h"
#include "crypto/ed25519.h"
#include "edge/expert_format.h"
#include "edge/safetensors.h"
#include "net/transport.h"
#include "trustmoe/v1/edge.grpc.pb.h"

namespace trustmoe::cli {
namespace {

using nlohmann::ordered_json;

constexpr uint64_t kGenesisBytesMax = 1 << 20;
constexpr uint64_t kProofFileBytesMax = 1 << 20;
constexpr uint32_t kPageSize = 500;

// ---- Flags shared by the chain command groups (one group runs per invocation). ----

struct ChainFlags {
  std::vector<std::string> validators;
  std::string genesis_file;
  bool trust_validator_genesis = false;
  std::string data_dir;
  std::string tls_mode = "plaintext";
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  bool json = false;
  // Submitting commands.
  std::string key_file;
  bool no_wait = false;
  uint32_t timeout_ms = 30'000;
};

ChainFlags& Flags() {
  static ChainFlags flags;
  return flags;
}

std::vector<std::string> SplitCommas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

void AddConnectionOptions(CLI::App* cmd, bool offline) {
  ChainFlags& flags = Flags();
  cmd->add_option("--validator", flags.validators,
                  "Validator endpoint host:port, repeatable or comma-separated, tried in order "
                  "(default: $TRUSTMOE_VALIDATOR)");
  cmd->add_option("--genesis", flags.genesis_file,
                  "Genesis file that everything is verified against (default: "
                  "$TRUSTMOE_GENESIS)");
  cmd->add_flag("--trust-validator-genesis", flags.trust_validator_genesis,
                "Without --genesis, use the genesis a validator serves (trusts that validator)");
  if (offline) {
    cmd->add_option("--data-dir", flags.data_dir,
                    "Offline: a copy of a validator's data directory (ledger in DIR/ledger)");
  }
  cmd->add_option("--tls-mode", flags.tls_mode, "plaintext, tls or mtls")
      ->check(CLI::IsMember({"plaintext", "tls", "mtls"}));
  cmd->add_option("--tls-ca", flags.tls_ca, "Cluster CA certificate (tls, mtls)");
  cmd->add_option("--tls-cert", flags.tls_cert, "Client certificate (mtls)");
  cmd->add_option("--tls-key", flags.tls_key, "Client certificate key (mtls)");
  cmd->add_option("--tls-server-name", flags.tls_server_name,
                  "Name expected in the validators' certificates");
  cmd->add_flag("--json", flags.json, "Machine-readable output");
}

void AddSubmitOptions(CLI::App* cmd) {
  ChainFlags& flags = Flags();
  cmd->add_option("--key", flags.key_file, "Signing key (PEM; or $TRUSTMOE_KEY)");
  cmd->add_flag("--no-wait", flags.no_wait,
                "Return once a validator admitted the transaction, without waiting for it to "
                "commit");
  cmd->add_option("--timeout-ms", flags.timeout_ms,
                  "How long to wait for the commit (default 30000)");
}

// ---- Small parsers and printers ----

Result<uint64_t> ParseU64(const std::string& text, const std::string& what) {
  uint64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end) {
    return Status::InvalidArgument(what + " '" + text + "' is not a non-negative integer");
  }
  return value;
}

Result<int64_t> ParseI64(const std::string& text, const std::string& what) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end) {
    return Status::InvalidArgument(what + " '" + text + "' is not an integer");
  }
  return value;
}

Result<uint64_t> ParseHeight(const std::string& text) {
  TRUSTMOE_ASSIGN_OR_RETURN(uint64_t height, ParseU64(text, "block height"));
  if (height == 0) return Status::InvalidArgument("block heights start at 1 (0 is the genesis)");
  return height;
}

Result<ledger::TxId> ParseTxId(const std::string& text) {
  auto id = crypto::DigestFromHex(text);
  if (!id.ok()) {
    return Status::InvalidArgument("tx id '" + text + "' is not 64 hex digits");
  }
  return id;
}

bool IsHex(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789abcdefABCDEF") == std::string_view::npos;
}

// A public key given as 64 hex digits or as a PEM file.
Result<crypto::PublicKey> ParsePublicKeyArg(const std::string& text, const std::string& what) {
  if (text.size() == 64 && IsHex(text)) return crypto::PublicKey::FromHex(text);
  std::error_code ec;
  if (std::filesystem::is_regular_file(text, ec)) {
    auto key = crypto::PublicKey::LoadPem(text);
    if (key.ok()) return key;
    if (crypto::PrivateKey::FromPem(ReadFile(text, 1 << 16).value_or("")).ok()) {
      return Status::InvalidArgument(what + ": " + text +
                                     " is a private key; pass its public key (FILE.pub)");
    }
    return Status::InvalidArgument(what + ": " + text +
                                   " is not an Ed25519 public key PEM: " + key.status().message());
  }
  if (IsHex(text)) {
    return Status::InvalidArgument(what + ": '" + text + "' has " + std::to_string(text.size()) +
                                   " hex digits, expected 64");
  }
  return Status::InvalidArgument(what + ": '" + text +
                                 "' is neither 64 hex digits nor a readable public key PEM file");
}

Result<crypto::PrivateKey> LoadSigningKey() {
  std::string path = Flags().key_file;
  if (path.empty() && std::getenv("TRUSTMOE_KEY")) path = std::getenv("TRUSTMOE_KEY");
  if (path.empty()) {
    return Status::InvalidArgument(
        "this command signs a transaction: pass --key FILE or set TRUSTMOE_KEY");
  }
  auto key = crypto::PrivateKey::LoadPem(path);
  if (!key.ok()) return key.status().WithContext("signing key");
  return key;
}

std::string TimeText(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(unix_ms % 1000));
  return out;
}

std::string ValidatorName(const ledger::Genesis& genesis, uint32_t id) {
  if (id < genesis.validators.size()) return genesis.validators[id].name;
  return "?";
}

// "admin", a validator's name, or "" for other signers.
std::string SignerLabel(const ledger::Genesis& genesis, const crypto::PublicKey& key) {
  if (key == genesis.admin_key) return "admin";
  int id = genesis.ValidatorId(key);
  if (id >= 0) return "validator " + genesis.validators[static_cast<size_t>(id)].name;
  return "";
}

void PrintJson(const ordered_json& j) { std::printf("%s\n", j.dump(2).c_str()); }

// ---- Descriptions of transactions, blocks and proofs ----

ordered_json JobMetricsJson(const ledger::JobMetrics& m) {
  return {{"step", m.step},
          {"loss", m.loss},
          {"accuracy", m.accuracy},
          {"verified", m.verified},
          {"rejected", m.rejected}};
}

ordered_json EdgesJson(const std::vector<crypto::PublicKey>& edges) {
  ordered_json out = ordered_json::array();
  for (const crypto::PublicKey& e : edges) out.push_back(e.Hex());
  return out;
}

ordered_json JobRecordBodyJson(const ledger::JobRecordBody& b) {
  ordered_json j = {{"job", b.job}, {"event", std::string(ledger::JobEventName(b.event))}};
  switch (b.event) {
    case ledger::JobEvent::kSubmitted:
      j["researcher"] = b.researcher.Hex();
      j["request_nonce"] = b.request_nonce;
      j["spec_sha256"] = crypto::DigestHex(crypto::Sha256::Hash(AsBytes(b.spec_toml)));
      j["spec_toml"] = b.spec_toml;
      j["signature"] = ToHex(b.signature);
      break;
    case ledger::JobEvent::kPlacement: {
      ordered_json entries = ordered_json::array();
      for (const ledger::PlacementEntry& e : b.placement) {
        entries.push_back(
            {{"index", e.index}, {"expert", e.expert_cid}, {"edges", EdgesJson(e.edges)}});
      }
      j["placement"] = entries;
      break;
    }
    case ledger::JobEvent::kCheckpoint:
    case ledger::JobEvent::kCompleted:
      j["metrics"] = JobMetricsJson(b.metrics);
      j[b.event == ledger::JobEvent::kCheckpoint ? "state_cid" : "output_cid"] = b.cid;
      break;
    case ledger::JobEvent::kCancelled:
    case ledger::JobEvent::kFailed:
      j["detail"] = b.detail;
      break;
  }
  return j;
}

ordered_json BodyJson(const ledger::Tx& tx) {
  switch (static_cast<ledger::TxType>(tx.type)) {
    case ledger::TxType::kRegisterNode: {
      auto b = ledger::RegisterNode::Decode(tx.body);
      if (!b.ok()) break;
      return {{"key", b->key.Hex()},
              {"role", std::string(ledger::NodeRoleName(b->role))},
              {"name", b->name},
              {"endpoint", b->endpoint}};
    }
    case ledger::TxType::kPublishExpert: {
      auto b = ledger::PublishExpert::Decode(tx.body);
      if (!b.ok()) break;
      return {{"cid", b->cid}, {"name", b->name}, {"arch", b->arch}, {"size", b->size}};
    }
    case ledger::TxType::kPublishModel: {
      auto b = ledger::PublishModel::Decode(tx.body);
      if (!b.ok()) break;
      return {{"manifest_cid", b->manifest_cid}, {"name", b->name}};
    }
    case ledger::TxType::kExpertResult: {
      auto b = ledger::ExpertResultBody::Decode(tx.body);
      if (!b.ok()) break;
      ordered_json j = {{"kind", std::string(ledger::CallKindName(b->kind))},
                        {"job", b->job},
                        {"step", b->step},
                        {"expert", b->expert_cid},
                        {"input", b->input_cid}};
      if (!b->grad_output_cid.empty()) j["grad_output"] = b->grad_output_cid;
      j["output"] = b->output_cid;
      j["rows"] = b->rows;
      j["dtype"] = std::string(ledger::ComputeDTypeName(b->dtype));
      j["device"] = b->device;
      return j;
    }
    case ledger::TxType::kVote: {
      auto b = ledger::VoteBody::Decode(tx.body);
      if (!b.ok()) break;
      return {{"edge", b->edge.Hex()},
              {"result_nonce", b->result_nonce},
              {"verdict", std::string(ledger::VerdictName(b->verdict))},
              {"reason", std::string(ledger::RejectReasonName(b->reason))},
              {"detail", b->detail}};
    }
    case ledger::TxType::kLiftBlacklist: {
      auto b = ledger::LiftBlacklist::Decode(tx.body);
      if (!b.ok()) break;
      return {{"key", b->key.Hex()}, {"reason", b->reason}};
    }
    case ledger::TxType::kExpertUpdated: {
      auto b = ledger::ExpertUpdatedBody::Decode(tx.body);
      if (!b.ok()) break;
      ordered_json sources = ordered_json::array();
      for (uint64_t n : b->sources) {
        char hex[17];
        std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(n));
        sources.push_back(hex);
      }
      return {{"job", b->job},
              {"step", b->step},
              {"parent", b->parent_cid},
              {"parent_state", b->parent_state_cid},
              {"child", b->child_cid},
              {"child_state", b->child_state_cid},
              {"child_size", b->child_size},
              {"optimizer", b->optimizer.kind == ledger::OptimizerKind::kAdam ? "adam" : "sgd"},
              {"lr", b->optimizer.lr},
              {"momentum", b->optimizer.momentum},
              {"weight_decay", b->optimizer.weight_decay},
              {"dtype", std::string(ledger::ComputeDTypeName(b->dtype))},
              {"device", b->device},
              {"sources", sources}};
    }
    case ledger::TxType::kJobRecord: {
      auto b = ledger::JobRecordBody::Decode(tx.body);
      if (!b.ok()) break;
      return JobRecordBodyJson(*b);
    }
    case ledger::TxType::kReportCommitment: {
      auto b = ledger::ReportCommitment::Decode(tx.body, 4u << 20);
      if (!b.ok()) break;
      return {{"edge", b->edge.Hex()},
              {"commitment", crypto::DigestHex(pbft::ComputeTxId(b->commitment))},
              {"expert", b->expert_cid},
              {"input", b->input_cid}};
    }
    default:
      break;
  }
  return {{"hex", ToHex(tx.body)}};
}

ordered_json TxJson(const ledger::Genesis& genesis, const Bytes& bytes) {
  ordered_json j;
  j["id"] = crypto::DigestHex(pbft::ComputeTxId(bytes));
  auto tx = ledger::Tx::Decode(bytes, genesis.params.tx_bytes_max);
  if (!tx.ok()) {
    j["type"] = "undecodable";
    j["error"] = tx.status().message();
    return j;
  }
  j["type"] = std::string(ledger::TxTypeName(tx->type));
  j["signer"] = tx->signer.Hex();
  std::string label = SignerLabel(genesis, tx->signer);
  if (!label.empty()) j["signer_is"] = label;
  j["nonce"] = tx->nonce;
  j["body"] = BodyJson(*tx);
  return j;
}

// One line for a body: "key=... role=edge name=...".
std::string BodyLine(const ordered_json& body) {
  std::string out;
  for (auto it = body.begin(); it != body.end(); ++it) {
    if (!out.empty()) out += "  ";
    // Strings print as they are unless they hold control characters (a TOML spec, untrusted
    // text): those print JSON-quoted, on one line.
    const bool plain =
        it->is_string() && std::none_of(it->get_ref<const std::string&>().begin(),
                                        it->get_ref<const std::string&>().end(),
                                        [](unsigned char c) { return c < 0x20 || c == 0x7f; });
    out += it.key() + "=" + (plain ? it->get<std::string>() : it->dump());
  }
  return out;
}

ordered_json CertJson(const ledger::Genesis& genesis, const ledger::CommitCertificate& cert) {
  ordered_json signers = ordered_json::array();
  for (const auto& [id, sig] : cert.signatures) {
    signers.push_back({{"id", id}, {"name", ValidatorName(genesis, id)}});
  }
  return {{"view", cert.view},
          {"signers", signers},
          {"validators", genesis.validators.size()},
          {"quorum", genesis.Validators().quorum()},
          {"verified", true}};
}

std::string CertLine(const ledger::Genesis& genesis, const ledger::CommitCertificate& cert) {
  std::string names;
  for (const auto& [id, sig] : cert.signatures) {
    if (!names.empty()) names += ", ";
    names += ValidatorName(genesis, id);
  }
  return "view " + std::to_string(cert.view) + ", signed by " + names + " (" +
         std::to_string(cert.signatures.size()) + " of " +
         std::to_string(genesis.validators.size()) + ", quorum " +
         std::to_string(genesis.Validators().quorum()) + "): verified";
}

ordered_json BlockJson(const ledger::Genesis& genesis, const ledger::StoredBlock& b) {
  ordered_json j;
  j["height"] = b.height;
  j["digest"] = crypto::DigestHex(b.digest);
  j["null"] = !b.block.has_value();
  if (b.block) {
    const ledger::BlockHeader& h = b.block->header;
    j["view"] = h.view;
    j["prev_hash"] = crypto::DigestHex(h.prev_hash);
    j["tx_root"] = crypto::DigestHex(h.tx_root);
    j["state_root"] = crypto::DigestHex(h.state_root);
    j["time_unix_ms"] = h.time_unix_ms;
    j["proposer"] = h.proposer;
    j["proposer_name"] = ValidatorName(genesis, h.proposer);
    ordered_json txs = ordered_json::array();
    for (const Bytes& tx : b.block->txs) txs.push_back(TxJson(genesis, tx));
    j["txs"] = txs;
  }
  j["certificate"] = CertJson(genesis, b.cert);
  return j;
}

void PrintBlockRowHeader() {
  std::printf("%-8s %-5s %-5s %-10s %-24s %s\n", "HEIGHT", "TXS", "VIEW", "PROPOSER", "TIME (UTC)",
              "DIGEST");
}

void PrintBlockRow(const ledger::Genesis& genesis, const ledger::StoredBlock& b) {
  if (!b.block) {
    std::printf("%-8llu %-5s %-5s %-10s %-24s %s\n", static_cast<unsigned long long>(b.height), "-",
                "-", "-", "null block", crypto::DigestHex(b.digest).c_str());
    return;
  }
  const ledger::BlockHeader& h = b.block->header;
  std::printf("%-8llu %-5zu %-5llu %-10s %-24s %s\n", static_cast<unsigned long long>(b.height),
              b.block->txs.size(), static_cast<unsigned long long>(h.view),
              ValidatorName(genesis, h.proposer).c_str(), TimeText(h.time_unix_ms).c_str(),
              crypto::DigestHex(b.digest).c_str());
}

ordered_json BlockSummaryJson(const ledger::Genesis& genesis, const ledger::StoredBlock& b) {
  ordered_json j = BlockJson(genesis, b);
  j.erase("txs");
  j["tx_count"] = b.block ? b.block->txs.size() : 0;
  return j;
}

void PrintBlock(const ledger::Genesis& genesis, const ledger::StoredBlock& b) {
  std::printf("block        %llu\n", static_cast<unsigned long long>(b.height));
  std::printf("digest       %s\n", crypto::DigestHex(b.digest).c_str());
  if (!b.block) {
    std::printf("null block   filled in by a view change: no header, no transactions\n");
  } else {
    const ledger::BlockHeader& h = b.block->header;
    std::printf("prev_hash    %s\n", crypto::DigestHex(h.prev_hash).c_str());
    std::printf("tx_root      %s\n", crypto::DigestHex(h.tx_root).c_str());
    std::printf("state_root   %s (state after block %llu)\n",
                crypto::DigestHex(h.state_root).c_str(),
                static_cast<unsigned long long>(h.height - 1));
    std::printf("time         %s (%lld)\n", TimeText(h.time_unix_ms).c_str(),
                static_cast<long long>(h.time_unix_ms));
    std::printf("view         %llu\n", static_cast<unsigned long long>(h.view));
    std::printf("proposer     %u (%s)\n", h.proposer, ValidatorName(genesis, h.proposer).c_str());
  }
  std::printf("certificate  %s\n", CertLine(genesis, b.cert).c_str());
  if (!b.block) return;
  std::printf("txs          %zu\n", b.block->txs.size());
  for (size_t i = 0; i < b.block->txs.size(); ++i) {
    ordered_json tx = TxJson(genesis, b.block->txs[i]);
    std::printf("  %-4zu %s  %s\n", i, tx["id"].get<std::string>().c_str(),
                tx["type"].get<std::string>().c_str());
    if (tx.contains("body")) std::printf("       %s\n", BodyLine(tx["body"]).c_str());
  }
}

ordered_json ProofJson(const ledger::Genesis& genesis, const chain::VerifiedTx& tx) {
  ordered_json path = ordered_json::array();
  for (const ledger::Digest& d : tx.tx.proof.path) path.push_back(crypto::DigestHex(d));
  return {{"tx_id", crypto::DigestHex(tx.id)},
          {"height", tx.tx.header.height},
          {"block_digest", crypto::DigestHex(tx.tx.header.Hash())},
          {"index", tx.tx.proof.index},
          {"tx_count", tx.tx.proof.tx_count},
          {"tx_root", crypto::DigestHex(tx.tx.header.tx_root)},
          {"path", path},
          {"certificate", CertJson(genesis, tx.tx.cert)},
          {"chain_id", genesis.chain_id},
          {"genesis_digest", crypto::DigestHex(genesis.Hash())},
          {"verified", true}};
}

void PrintTx(const ledger::Genesis& genesis, const chain::VerifiedTx& tx) {
  ordered_json j = TxJson(genesis, tx.tx.tx);
  std::printf("tx           %s\n", j["id"].get<std::string>().c_str());
  std::printf("type         %s\n", j["type"].get<std::string>().c_str());
  if (j.contains("signer")) {
    std::string label = j.value("signer_is", "");
    std::printf("signer       %s%s\n", j["signer"].get<std::string>().c_str(),
                label.empty() ? "" : (" (" + label + ")").c_str());
    std::printf("nonce        %llu\n", static_cast<unsigned long long>(j["nonce"].get<uint64_t>()));
    std::printf("body         %s\n", BodyLine(j["body"]).c_str());
  }
  std::printf("block        %llu (%s)\n", static_cast<unsigned long long>(tx.tx.header.height),
              TimeText(tx.tx.header.time_unix_ms).c_str());
  std::printf("index        %u of %u\n", tx.tx.proof.index, tx.tx.proof.tx_count);
  std::printf("inclusion    verified: %zu-hash Merkle path to tx root %s\n",
              tx.tx.proof.path.size(), crypto::DigestHex(tx.tx.header.tx_root).c_str());
  std::printf("certificate  %s\n", CertLine(genesis, tx.tx.cert).c_str());
}

// ---- Where ledger commands read from ----

// A source of verified ledger data: validators (online) or a ledger directory (offline).
class LedgerSource {
 public:
  virtual ~LedgerSource() = default;
  virtual std::string Describe() const = 0;
  virtual bool online() const = 0;
  // The head height (verified by fetching the head block) and its block (nullopt at 0).
  virtual Result<uint64_t> HeadHeight() = 0;
  virtual Result<ledger::StoredBlock> Block(uint64_t height) = 0;
  virtual Result<chain::VerifiedTx> Tx(const ledger::TxId& id) = 0;
  virtual Result<std::vector<chain::NodeEntry>> Nodes() = 0;
  virtual Result<std::vector<ledger::ExpertRecord>> Experts() = 0;
  virtual Result<std::vector<ledger::ModelRecord>> Models() = 0;
  // Every result of `job` with its verdict and votes (chain::ReadJobResults).
  virtual Result<std::vector<chain::ResultEntry>> JobResults(const std::string& job) = 0;
  // The state: reported by validators through ScanState (not proven), or the ledger's own.
  virtual const ledger::StateReader& State() = 0;
};

// The validators' state through ChainClient::ScanState (reported, not proven).
class ReportedStateReader final : public ledger::StateReader {
 public:
  explicit ReportedStateReader(chain::ChainClient* client) : client_(client) {}
  Result<std::optional<Bytes>> Get(const std::string& key) const override {
    TRUSTMOE_ASSIGN_OR_RETURN(chain::ScanPage page, client_->ScanState(key, "", 1));
    if (page.entries.empty() || page.entries[0].first != key) return std::optional<Bytes>();
    return std::optional<Bytes>(std::move(page.entries[0].second));
  }
  Result<std::vector<std::pair<std::string, Bytes>>> Scan(const std::string& prefix,
                                                          const std::string& start_after,
                                                          size_t limit) const override {
    const auto n = static_cast<uint32_t>(std::clamp<size_t>(limit, 1, kScanLimitMax));
    TRUSTMOE_ASSIGN_OR_RETURN(chain::ScanPage page, client_->ScanState(prefix, start_after, n));
    return std::move(page.entries);
  }

 private:
  static constexpr size_t kScanLimitMax = 1000;  // ChainClient::ScanState's bound
  chain::ChainClient* client_;
};

class OnlineSource : public LedgerSource {
 public:
  explicit OnlineSource(std::unique_ptr<chain::ChainClient> client)
      : client_(std::move(client)), state_(client_.get()) {}
  std::string Describe() const override {
    std::string out;
    for (const std::string& e : Flags().validators) out += (out.empty() ? "" : ",") + e;
    return "validators " + out;
  }
  bool online() const override { return true; }
  Result<uint64_t> HeadHeight() override {
    TRUSTMOE_ASSIGN_OR_RETURN(chain::ReportedHead head, client_->GetHead());
    reported_ = head;
    return head.height;
  }
  Result<ledger::StoredBlock> Block(uint64_t height) override { return client_->GetBlock(height); }
  Result<chain::VerifiedTx> Tx(const ledger::TxId& id) override { return client_->GetTx(id); }
  Result<std::vector<chain::NodeEntry>> Nodes() override {
    return Pages<chain::NodeEntry>(
        [&](const std::string& after) { return client_->ListNodes(after, kPageSize); },
        [](const chain::NodeEntry& e) { return e.record.key.Hex(); });
  }
  Result<std::vector<ledger::ExpertRecord>> Experts() override {
    return Pages<ledger::ExpertRecord>(
        [&](const std::string& after) { return client_->ListExperts(after, kPageSize); },
        [](const ledger::ExpertRecord& e) { return e.cid; });
  }
  Result<std::vector<ledger::ModelRecord>> Models() override {
    return Pages<ledger::ModelRecord>(
        [&](const std::string& after) { return client_->ListModels(after, kPageSize); },
        [](const ledger::ModelRecord& e) { return e.manifest_cid; });
  }
  Result<std::vector<chain::ResultEntry>> JobResults(const std::string& job) override {
    return client_->Results(job);
  }
  const ledger::StateReader& State() override { return state_; }
  const std::optional<chain::ReportedHead>& reported() const { return reported_; }
  chain::ChainClient& client() { return *client_; }

 private:
  template <typename T, typename Fetch, typename KeyOf>
  static Result<std::vector<T>> Pages(Fetch fetch, KeyOf key_of) {
    std::vector<T> all;
    std::string after;
    while (true) {
      TRUSTMOE_ASSIGN_OR_RETURN(std::vector<T> page, fetch(after));
      if (page.empty()) break;
      std::string last = key_of(page.back());
      if (last <= after) return Status::DataLoss("the validator's listing does not advance");
      for (T& e : page) all.push_back(std::move(e));
      // A validator may cap pages below kPageSize: only an empty page ends the listing.
      after = last;
    }
    return all;
  }

  std::unique_ptr<chain::ChainClient> client_;
  ReportedStateReader state_;
  std::optional<chain::ReportedHead> reported_;
};

class OfflineSource : public LedgerSource {
 public:
  OfflineSource(ledger::Genesis genesis, std::unique_ptr<ledger::LedgerStore> store,
                std::string path)
      : genesis_(genesis), store_(std::move(store)), path_(std::move(path)) {}
  std::string Describe() const override { return "ledger " + path_ + " (offline)"; }
  bool online() const override { return false; }
  Result<uint64_t> HeadHeight() override { return store_->Head().height; }
  Result<ledger::StoredBlock> Block(uint64_t height) override {
    uint64_t head = store_->Head().height;
    if (height > head) {
      return Status::NotFound("block " + std::to_string(height) + " is above the head (" +
                              std::to_string(head) + ")");
    }
    TRUSTMOE_ASSIGN_OR_RETURN(Bytes block, store_->RawBlock(height));
    TRUSTMOE_ASSIGN_OR_RETURN(Bytes cert, store_->RawCert(height));
    return chain::VerifyBlockBytes(genesis_, height, block, cert, {});
  }
  Result<chain::VerifiedTx> Tx(const ledger::TxId& id) override {
    TRUSTMOE_ASSIGN_OR_RETURN(ledger::TxWithProof found, store_->GetTx(id));
    chain::VerifiedTx tx{id, std::move(found)};
    TRUSTMOE_RETURN_IF_ERROR(chain::VerifyTx(genesis_, tx));
    return tx;
  }
  Result<std::vector<chain::NodeEntry>> Nodes() override;
  Result<std::vector<ledger::ExpertRecord>> Experts() override {
    return ScanAll<ledger::ExpertRecord>("expert/");
  }
  Result<std::vector<ledger::ModelRecord>> Models() override {
    return ScanAll<ledger::ModelRecord>("model/");
  }
  Result<std::vector<chain::ResultEntry>> JobResults(const std::string& job) override {
    return chain::ReadJobResults(*store_, job, genesis_.validators.size());
  }
  const ledger::StateReader& State() override { return *store_; }
  ledger::LedgerStore& store() { return *store_; }

 private:
  template <typename T>
  Result<std::vector<T>> ScanAll(const std::string& prefix) {
    std::vector<T> out;
    std::string after;
    while (true) {
      TRUSTMOE_ASSIGN_OR_RETURN(auto page, store_->Scan(prefix, after, kPageSize));
      for (const auto& [key, value] : page) {
        auto record = T::Decode(value);
        if (!record.ok()) return record.status().WithContext("stored state " + key);
        out.push_back(std::move(record).value());
      }
      if (page.size() < kPageSize) break;
      after = page.back().first;
    }
    return out;
  }

  ledger::Genesis genesis_;
  std::unique_ptr<ledger::LedgerStore> store_;
  std::string path_;
};

Result<std::vector<chain::NodeEntry>> OfflineSource::Nodes() {
  TRUSTMOE_ASSIGN_OR_RETURN(auto records, ScanAll<ledger::NodeRecord>("node/"));
  std::vector<chain::NodeEntry> out;
  for (ledger::NodeRecord& record : records) {
    chain::NodeEntry e;
    TRUSTMOE_ASSIGN_OR_RETURN(auto rep, store_->Get(ledger::ReputationKey(record.key)));
    if (rep) {
      auto decoded = ledger::Reputation::Decode(*rep);
      if (!decoded.ok()) return decoded.status().WithContext("stored reputation");
      e.reputation = *decoded;
    }
    e.record = std::move(record);
    out.push_back(std::move(e));
  }
  return out;
}

struct Session {
  ledger::Genesis genesis;
  std::unique_ptr<LedgerSource> source;
};

Result<net::TransportConfig> TransportFromFlags() {
  const ChainFlags& flags = Flags();
  net::TransportConfig transport;
  TRUSTMOE_ASSIGN_OR_RETURN(transport.mode, net::ParseTlsMode(flags.tls_mode));
  transport.ca_file = flags.tls_ca;
  transport.cert_file = flags.tls_cert;
  transport.key_file = flags.tls_key;
  transport.server_name_override = flags.tls_server_name;
  return transport;
}

Result<chain::ChainClientOptions> ClientOptionsFromFlags() {
  chain::ChainClientOptions options;
  for (const std::string& v : Flags().validators) {
    for (std::string& e : SplitCommas(v)) options.endpoints.push_back(std::move(e));
  }
  if (options.endpoints.empty() && std::getenv("TRUSTMOE_VALIDATOR")) {
    options.endpoints = SplitCommas(std::getenv("TRUSTMOE_VALIDATOR"));
  }
  if (options.endpoints.empty()) {
    return Status::InvalidArgument(
        "no validator: pass --validator host:port (or set "
        "TRUSTMOE_VALIDATOR)");
  }
  Flags().validators = options.endpoints;
  TRUSTMOE_ASSIGN_OR_RETURN(options.transport, TransportFromFlags());
  options.commit_timeout_ms = Flags().timeout_ms;
  return options;
}

std::string GenesisPathFromFlags() {
  std::string path = Flags().genesis_file;
  if (path.empty() && std::getenv("TRUSTMOE_GENESIS")) path = std::getenv("TRUSTMOE_GENESIS");
  return path;
}

Result<ledger::Genesis> LoadGenesisFile(const std::string& path) {
  auto genesis = ledger::Genesis::Load(path);
  if (!genesis.ok()) return genesis.status().WithContext("genesis file " + path);
  return genesis;
}

// The genesis from --genesis, or, with --trust-validator-genesis and endpoints, from a
// validator.
Result<ledger::Genesis> LoadGenesis(const chain::ChainClientOptions* online) {
  std::string path = GenesisPathFromFlags();
  if (!path.empty()) return LoadGenesisFile(path);
  if (online != nullptr && Flags().trust_validator_genesis) {
    TRUSTMOE_ASSIGN_OR_RETURN(ledger::Genesis genesis, chain::ChainClient::FetchGenesis(*online));
    std::fprintf(stderr,
                 "trustmoe: warning: using the genesis served by the validator (digest %s) "
                 "without checking it (--trust-validator-genesis)\n",
                 crypto::DigestHex(genesis.Hash()).c_str());
    return genesis;
  }
  return Status::InvalidArgument(
      "pass --genesis FILE (or set TRUSTMOE_GENESIS): the chain is verified against the "
      "genesis file you hold, not against what a validator says" +
      std::string(online ? "; --trust-validator-genesis takes the validator's instead" : ""));
}

// DIR/ledger, or DIR itself when it is the RocksDB directory.
Result<std::string> LedgerPathOf(const std::string& data_dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(data_dir, ec)) {
    return Status::NotFound("data directory " + data_dir + " does not exist");
  }
  for (const std::string& candidate : {data_dir + "/ledger", data_dir}) {
    if (std::filesystem::exists(candidate + "/CURRENT", ec)) return candidate;
  }
  return Status::NotFound("no ledger in " + data_dir +
                          ": expected a validator's ledger (RocksDB) at DIR/ledger");
}

Result<Session> OpenSession() {
  Session session;
  const std::string& data_dir = Flags().data_dir;
  if (!data_dir.empty()) {
    TRUSTMOE_ASSIGN_OR_RETURN(session.genesis, LoadGenesis(nullptr));
    TRUSTMOE_ASSIGN_OR_RETURN(std::string path, LedgerPathOf(data_dir));
    ledger::LedgerOptions options;
    options.path = path;
    options.read_only = true;
    options.validators = session.genesis.Validators();
    options.limits = session.genesis.Limits();
    options.genesis_digest = session.genesis.Hash();
    auto store = ledger::LedgerStore::Open(options);
    if (!store.ok()) return store.status().WithContext("opening " + path + " read-only");
    session.source =
        std::make_unique<OfflineSource>(session.genesis, std::move(store).value(), path);
    return session;
  }
  auto options = ClientOptionsFromFlags();
  if (!options.ok()) {
    return Status::InvalidArgument(
        "choose where to read: --validator host:port (or TRUSTMOE_VALIDATOR) for validators, "
        "or --data-dir DIR for a copy of a validator's data directory (offline)");
  }
  TRUSTMOE_ASSIGN_OR_RETURN(session.genesis, LoadGenesis(&*options));
  TRUSTMOE_ASSIGN_OR_RETURN(auto client, chain::ChainClient::Create(*options, session.genesis));
  session.source = std::make_unique<OnlineSource>(std::move(client));
  return session;
}

// ---- ledger commands ----

Status LedgerHead() {
  TRUSTMOE_ASSIGN_OR_RETURN(Session session, OpenSession());
  LedgerSource& source = *session.source;
  const ledger::Genesis& genesis = session.genesis;
  TRUSTMOE_ASSIGN_OR_RETURN(uint64_t height, source.HeadHeight());
  std::optional<ledger::StoredBlock> block;
  if (height > 0) {
    TRUSTMOE_ASSIGN_OR_RETURN(block, source.Block(height));
  }
  std::optional<chain::ReportedHead> reported;
  if (source.online()) {
    reported = static_cast<OnlineSource&>(source).reported();
    if (block && reported && reported->digest != block->digest) {
      return Status::DataLoss("validator " + reported->endpoint + " reports head digest " +
                              crypto::DigestHex(reported->digest) + " but block " +
                              std::to_string(height) + " is certified with digest " +
                              crypto::DigestHex(block->digest));
    }
  }
  ledger::Digest digest = block ? block->digest : genesis.Hash();
  int64_t time_ms = block && block->block ? block->block->header.time_unix_ms : 0;
  if (Flags().json) {
    ordered_json j = {{"height", height},
                      {"digest", crypto::DigestHex(digest)},
                      {"time_unix_ms", time_ms},
                      {"chain_id", genesis.chain_id},
                      {"genesis_digest", crypto::DigestHex(genesis.Hash())},
                      {"source", source.Describe()},
                      {"verified", true}};
    if (reported) {
      j["reported_by"] = reported->endpoint;
      j["reported_state_root"] = crypto::DigestHex(reported->state_root);
      j["view"] = reported->view;
      j["validator_id"] = reported->validator_id;
    }
    PrintJson(j);
    return Status::Ok();
  }
  std::printf("chain        %s (genesis %s)\n", genesis.chain_id.c_str(),
              crypto::DigestHex(genesis.Hash()).c_str());
  std::printf("source       %s\n", source.Describe().c_str());
  std::printf("height       %llu\n", static_cast<unsigned long long>(height));
  std::printf("digest       %s\n", crypto::DigestHex(digest).c_str());
  if (height > 0) {
    std::printf("time         %s\n", TimeText(time_ms).c_str());
    std::printf("certificate  %s\n", CertLine(genesis, block->cert).c_str());
  } else {
    std::printf("             no block yet: the digest is the genesis digest\n");
  }
  if (reported) {
    std::printf(
        "reported by  %s (validator %u, view %llu; state root %s, not verifiable "
        "without replay)\n",
        reported->endpoint.c_str(), reported->validator_id,
        static_cast<unsigned long long>(reported->view),
        crypto::DigestHex(reported->state_root).c_str());
  }
  return Status::Ok();
}

struct RangeFlags {
  std::string from;
  std::string to;
};
RangeFlags& Range() {
  static RangeFlags range;
  return range;
}

Status LedgerBlocks() {
  TRUSTMOE_ASSIGN_OR_RETURN(Session session, OpenSession());
  LedgerSource& source = *session.source;
  TRUSTMOE_ASSIGN_OR_RETURN(uint64_t head, source.HeadHeight());
  uint64_t from = 1;
  uint64_t to = head;
  if (!Range().from.empty()) {
    TRUSTMOE_ASSIGN_OR_RETURN(from, ParseHeight(Range().from));
  }
  if (!Range().to.empty()) {
    TRUSTMOE_ASSIGN_OR_RETURN(to, ParseHeight(Range().to));
  }
  if (to > head) {
    return Status::OutOfRange("--to " + std::to_string(to) + " is above the head (" +
                              std::to_string(head) + ")");
  }
  if (from > to && head > 0) {
    return Status::InvalidArgument("--from " + std::to_string(from) + " is after --to " +
                                   std::to_string(to));
  }
  ordered_json all = ordered_json::array();
  if (!Flags().json) PrintBlockRowHeader();
  for (uint64_t h = from; h <= to && head > 0; ++h) {
    TRUSTMOE_ASSIGN_OR_RETURN(ledger::StoredBlock b, source.Block(h));
    if (Flags().json) {
      all.push_back(BlockSummaryJson(session.genesis, b));
    } else {
      PrintBlockRow(session.genesis, b);
    }
  }
  if (Flags().json) PrintJson(all);
  return Status::Ok();
}

uint64_t& WatchCount() {
  static uint64_t count = 0;
  return count;
}

// Online only: verified blocks as they commit, one line (or one JSON object per line) each.
Status LedgerWatch() {
  TRUSTMOE_ASSIGN_OR_RETURN(Session session, OpenSession());
  if (!session.source->online()) {
    return Status::InvalidArgument(
        "ledger watch follows validators: pass --validator (offline, use `ledger blocks`)");
  }
  uint64_t from = 1;
  if (!Range().from.empty()) {
    TRUSTMOE_ASSIGN_OR_RETURN(from, ParseHeight(Range().from));
  }
  if (!Flags().json) PrintBlockRowHeader();
  std::fflush(stdout);
  uint64_t seen = 0;
  auto& client = static_cast<OnlineSource&>(*session.source).client();
  return client.WatchBlocks(from, [&](const ledger::StoredBlock& b) {
    if (Flags().json) {
      std::printf("%s\n", BlockSummaryJson(session.genesis, b).dump().c_str());
    } else {
      PrintBlockRow(session.genesis, b);
    }
    std::fflush(stdout);
    ++seen;
    return WatchCount() == 0 || seen < WatchCount();
  });
}

std::string& HeightArg() {
  static std::string text;
  return text;
}

Status LedgerBlock() {
  TRUSTMOE_ASSIGN_OR_RETURN(uint64_t height, ParseHeight(HeightArg()));
  TRUSTMOE_ASSIGN_OR_RETURN(Session session, OpenSession());
  TRUSTMOE_ASSIGN_OR_RETURN(ledger::StoredBlock b, session.source->Block(height));
  if (Flags().json) {
    PrintJson(BlockJson(session.genesis, b));
  } else {
    PrintBlock(session.genesis, b);
  }
  return Status::Ok();
}

struct TxArgs {
  std::string id;
  std::string proof_out;
  std::string proof_file;
  bool verify = false;
};
TxArgs& TxFlags() {
  static TxArgs args;
  return args;
}

Status WriteProofFile(const ledger::Genesis& genesis, const chain::VerifiedTx& tx) {
  const std::string& path = TxFlags().proof_out;
  if (path.empty()) return Status::Ok();
  TRUSTMOE_RETURN_IF_ERROR(WriteFileAtomic(path, chain::TxProofFileJson(genesis, tx), 0644));
  if (!Flags().json) std::fprintf(stderr, "wrote inclusion proof to %s\n", path.c_str());
  return Status::Ok();
}

Status LedgerTx() {
  TRUSTMOE_ASSIGN_OR_RETURN(ledger::TxId id, ParseTxId(TxFlags().id));
  TRUSTMOE_ASSIGN_OR_RETURN(Session session, OpenSession());
  TRUSTMOE_ASSIGN_OR_RETURN(chain::VerifiedTx tx, session.source->Tx(id));
  TRUSTMOE_RETURN_IF_ERROR(WriteProofFile(session.genesis, tx));
  if (Flags().json) {
    ordered_json j = TxJson(session.genesis, tx.tx.tx);
    j["height"] = tx.tx.header.height;
    j["time_unix_ms"] = tx.tx.header.time_unix_ms;
    j["proof"] = ProofJson(session.genesis, tx);
    PrintJson(j);
  } else {
    PrintTx(session.genesis, tx);
  }
  return Status::Ok();
}

Status LedgerProof() {
  TxArgs& args = TxFlags();
  std::optional<ledger::TxId> id;
  if (!args.id.empty()) {
    TRUSTMOE_ASSIGN_OR_RETURN(id, ParseTxId(args.id));
  }
  ledger::Genesis genesis;
  std::optional<chain::VerifiedTx> tx;
  if (!args.proof_file.empty()) {
    // Fully offline: the proof file and the genesis file are all that is read.
    std::string path = GenesisPathFromFlags();
    if (path.empty()) {
      return Status::InvalidArgument(
          "pass --genesis FILE (or set TRUSTMOE_GENESIS) to check "
          "a proof file against");
    }
    TRUSTMOE_ASSIGN_OR_RETURN(genesis, LoadGenesisFile(path));
    auto text = ReadFile(args.proof_file, kProofFileBytesMax);
    if (!text.ok()) return text.status().WithContext("proof file");
    auto parsed = chain::ParseTxProofFile(genesis, *text);
    if (!parsed.ok()) return parsed.status().WithContext("proof file " + args.proof_file);
    tx = std::move(parsed).value();
    if (id && *id != tx->id) {
      return Status::InvalidArgument("proof file " + args.proof_file + " is for tx " +
                                     crypto::DigestHex(tx->id) + ", not " + args.id);
    }
  } else {
    if (!id) return Status::InvalidArgument("pass TX_ID, or --proof-file FILE");
    TRUSTMOE_ASSIGN_OR_RETURN(Session session, OpenSession());
    genesis = session.genesis;
    TRUSTMOE_ASSIGN_OR_RETURN(tx, session.source->Tx(*id));
  }
  // Checked once more on its own, exactly as a third party would.
  Status verified = chain::VerifyTx(genesis, *tx);
  if (!verified.ok()) return verified;
  TRUSTMOE_RETURN_IF_ERROR(WriteProofFile(genesis, *tx));
  if (Flags().json) {
    PrintJson(ProofJson(genesis, *tx));
    return Status::Ok();
  }
  std::printf("tx           %s\n", crypto::DigestHex(tx->id).c_str());
  std::printf("block        %llu, digest %s\n",
              static_cast<unsigned long long>(tx->tx.header.height),
              crypto::DigestHex(tx->tx.header.Hash()).c_str());
  std::printf("index        %u of %u\n", tx->tx.proof.index, tx->tx.proof.tx_count);
  std::printf("leaf         %s\n", crypto::DigestHex(ledger::TxLeaf(tx->id)).c_str());
  for (size_t i = 0; i < tx->tx.proof.path.size(); ++i) {
    std::printf("path[%zu]      %s\n", i, crypto::DigestHex(tx->tx.proof.path[i]).c_str());
  }
  std::printf("tx_root      %s\n", crypto::DigestHex(tx->tx.header.tx_root).c_str());
  std::printf("certificate  %s\n", CertLine(genesis, tx->tx.cert).c_str());
  std::printf("result       VERIFIED: included in block %llu of chain %s (genesis %s)\n",
              static_cast<unsigned long long>(tx->tx.header.height), genesis.chain_id.c_str(),
              crypto::DigestHex(genesis.Hash()).c_str());
  return Status::Ok();
}

bool& NoStateFlag() {
  static bool no_state = false;
  return no_state;
}

struct VerifyReport {
  bool ok = true;
  uint64_t head = 0;
  uint64_t checked = 0;
  uint64_t bad_height = 0;
  std::string reason;
  std::string checks;
};

// Online: every block fetched and verified (decode, digest, tx root, certificate), linked to
// the one before, and replayed to check the state roots unless --no-state.
VerifyReport VerifyOnline(Session& session) {
  VerifyReport report;
  bool replay_state = !NoStateFlag();
  report.checks = replay_state ? "links, tx roots, certificates, state replay"
                               : "links, tx roots, certificates";
  auto head = session.source->HeadHeight();
  if (!head.ok()) {
    report.ok = false;
    report.reason = head.status().ToString();
    return report;
  }
  report.head = *head;
  ledger::ChainReplay replay(session.genesis, ledger::TxRegistry::Default(), replay_state);
  for (uint64_t h = 1; h <= report.head; ++h) {
    auto block = session.source->Block(h);
    Status s = block.ok() ? replay.Apply(*block) : block.status();
    if (!s.ok()) {
      report.ok = false;
      report.bad_height = h;
      report.reason = s.ToString();
      return report;
    }
    report.checked = h;
  }
  return report;
}

VerifyReport VerifyOffline(Session& session) {
  VerifyReport report;
  report.checks = "links, tx roots, certificates, state replay, stored state root";
  auto& store = static_cast<OfflineSource&>(*session.source).store();
  report.head = store.Head().height;
  ledger::ChainCheck check =
      ledger::VerifyChainAndState(store, session.genesis, ledger::TxRegistry::Default());
  report.ok = check.ok;
  report.bad_height = check.first_bad_height;
  report.reason = check.reason;
  report.checked =
      check.ok ? report.head : (check.first_bad_height > 0 ? check.first_bad_height - 1 : 0);
  return report;
}

Status LedgerVerify() {
  TRUSTMOE_ASSIGN_OR_RETURN(Session session, OpenSession());
  auto start = std::chrono::steady_clock::now();
  VerifyReport report = session.source->online() ? VerifyOnline(session) : VerifyOffline(session);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double rate = seconds > 0 ? static_cast<double>(report.checked) / seconds : 0;
  if (Flags().json) {
    ordered_json j = {{"ok", report.ok},
                      {"head", report.head},
                      {"blocks_checked", report.checked},
                      {"checks", report.checks},
                      {"seconds", seconds},
                      {"blocks_per_s", rate},
                      {"source", session.source->Describe()},
                      {"genesis_digest", crypto::DigestHex(session.genesis.Hash())}};
    if (!report.ok) {
      j["first_bad_height"] = report.bad_height;
      j["reason"] = report.reason;
    }
    PrintJson(j);
  } else if (report.ok) {
    std::printf("ledger OK: blocks 1..%llu of chain %s verified against genesis %s\n",
                static_cast<unsigned long long>(report.head), session.genesis.chain_id.c_str(),
                crypto::DigestHex(session.genesis.Hash()).c_str());
    std::printf("checked      %s\n", report.checks.c_str());
    std::printf("source       %s\n", session.source->Describe().c_str());
    std::printf("speed        %llu blocks in %.3f s (%.0f blocks/s)\n",
                static_cast<unsigned long long>(report.checked), seconds, rate);
  }
  if (report.ok) return Status::Ok();
  if (report.bad_height == 0) {
    return Status::DataLoss("ledger verify failed: " + report.reason);
  }
  return Status::DataLoss("ledger verify failed at block " + std::to_string(report.bad_height) +
                          " (blocks 1.." + std::to_string(report.checked) +
                          " are good): " + report.reason);
}

Status LedgerNodes() {
  TRUSTMOE_ASSIGN_OR_RETURN(Session session, OpenSession());
  TRUSTMOE_ASSIGN_OR_RETURN(std::vector<chain::NodeEntry> nodes, session.source->Nodes());
  if (Flags().json) {
    ordered_json all = ordered_json::array();
    for (const chain::NodeEntry& n : nodes) {
      all.push_back({{"key", n.record.key.Hex()},
                     {"role", std::string(ledger::NodeRoleName(n.record.role))},
                     {"name", n.record.name},
                     {"endpoint", n.record.endpoint},
                     {"registered_height", n.record.registered_height},
                     {"accepted", n.reputation.accepted},
                     {"rejected", n.reputation.rejected},
                     {"strikes", n.reputation.strikes},
                     {"faults", n.reputation.faults},
                     {"contradictions", n.reputation.contradictions},
                     {"blacklisted", n.reputation.blacklisted},
                     {"blacklisted_height", n.reputation.blacklisted_height},
                     {"blacklist_reason", n.reputation.blacklist_reason}});
    }
    PrintJson(all);
    return Status::Ok();
  }
  std::printf("%-64s %-10s %-20s %-22s %6s %8s %8s %7s %6s %7s %s\n", "KEY", "ROLE", "NAME",
              "ENDPOINT", "HEIGHT", "ACCEPTED", "REJECTED", "STRIKES", "FAULTS", "CONTRA",
              "BLACKLISTED");
  for (const chain::NodeEntry& n : nodes) {
    std::string blacklisted =
        n.reputation.blacklisted ? "yes (block " + std::to_string(n.reputation.blacklisted_height) +
                                       ": " + n.reputation.blacklist_reason + ")"
                                 : "no";
    std::printf("%-64s %-10s %-20s %-22s %6llu %8llu %8llu %7u %6u %7llu %s\n",
                n.record.key.Hex().c_str(),
                std::string(ledger::NodeRoleName(n.record.role)).c_str(), n.record.name.c_str(),
                n.record.endpoint.empty() ? "-" : n.record.endpoint.c_str(),
                static_cast<unsigned long long>(n.record.registered_height),
                static_cast<unsigned long long>(n.reputation.accepted),
                static_cast<unsigned long long>(n.reputation.rejected), n.reputation.strikes,
                n.reputation.faults, static_cast<unsigned long long>(n.reputation.contradictions),
                blacklisted.c_str());
  }
  std::fprintf(stderr, "%zu nodes, as recorded by %s\n", nodes.size(),
               session.source->Describe().c_str());
  return Status::Ok();
}

Status LedgerExperts() {
  TRUSTMOE_ASSIGN_OR_RETURN(Session session, OpenSession());
  TRUSTMOE_ASSIGN_OR_RETURN(auto experts, session.source->Experts());
  if (Flags().json) {
    ordered_json all = ordered_json::array();
    for (const ledger::ExpertRecord& e : experts) {
      all.push_back({{"cid", e.cid},
                     {"name", e.name},
                     {"arch", e.arch},
                     {"size", e.size},
                     {"publisher", e.publisher.Hex()},
                     {"height", e.height}});
    }
    PrintJson(all);
    return Status::Ok();
  }
  std::printf("%-76s %-28s %-10s %12s %6s\n", "CID", "NAME", "ARCH", "SIZE", "HEIGHT");
  for (const ledger::ExpertRecord& e : experts) {
    std::printf("%-76s %-28s %-10s %12llu %6llu\n", e.cid.c_str(), e.name.c_str(), e.arch.c_str(),
                static_cast<unsigned long long>(e.size), static_cast<unsigned long long>(e.height));
  }
  return Status::Ok();
}

Status LedgerModels() {
  TRUSTMOE_ASSIGN_OR_RETURN(Session session, OpenSession());
  TRUSTMOE_ASSIGN_OR_RETURN(auto models, session.source->Models());
  if (Flags().json) {
    ordered_json all = ordered_json::array();
    for (const ledger::ModelRecord& m : models) {
      all.push_back({{"manifest_cid", m.manifest_cid},
                     {"name", m.name},
                     {"publisher", m.publisher.Hex()},
                     {"height", m.height}});
    }
    PrintJson(all);
    return Status::Ok();
  }
  std::printf("%-76s %-28s %6s\n", "MANIFEST CID", "NAME", "HEIGHT");
  for (const ledger::ModelRecord& m : models) {
    std::printf("%-76s %-28s %6llu\n", m.manifest_cid.c_str(), m.name.c_str(),
                static_cast<unsigned long long>(m.height));
  }
  return Status::Ok();
}

// ---- Submitting transactions ----

// Signs `body` as a `type` transaction with --key, submits it and reports the committed,
// verified result. `check` runs before anything is sent (e.g. the admin key check).
Status SubmitBody(
    ledger::TxType type, Bytes body,
    const std::function<Status(const ledger::Genesis&, const crypto::PrivateKey&)>& check = {}) {
  TRUSTMOE_ASSIGN_OR_RETURN(crypto::PrivateKey key, LoadSigningKey());
  TRUSTMOE_ASSIGN_OR_RETURN(chain::ChainClientOptions options, ClientOptionsFromFlags());
  TRUSTMOE_ASSIGN_OR_RETURN(ledger::Genesis genesis, LoadGenesis(&options));
  if (check) TRUSTMOE_RETURN_IF_ERROR(check(genesis, key));
  ledger::Tx tx =
      ledger::MakeTx(genesis.chain_id, type, key, ledger::FreshNonce(), std::move(body));
  Bytes bytes = tx.Encode();
  if (bytes.size() > genesis.params.tx_bytes_max) {
    return Status::InvalidArgument("the transaction is " + std::to_string(bytes.size()) +
                                   " bytes, over the chain's tx_bytes_max " +
                                   std::to_string(genesis.params.tx_bytes_max));
  }
  TRUSTMOE_ASSIGN_OR_RETURN(auto client, chain::ChainClient::Create(options, genesis));
  const bool wait = !Flags().no_wait;
  auto result = client->Submit(bytes, wait);
  std::string type_name(ledger::TxTypeName(static_cast<uint8_t>(type)));
  if (!result.ok()) {
    Status s = result.status();
    if (s.code() == StatusCode::kDeadlineExceeded) {
      return s.WithContext("tx " + crypto::DigestHex(tx.Id()) +
                           " was not committed in time; it may still commit: check with "
                           "`trustmoe ledger tx " +
                           crypto::DigestHex(tx.Id()) + "`");
    }
    return s.WithContext(type_name + " tx " + crypto::DigestHex(tx.Id()));
  }
  if (Flags().json) {
    ordered_json j = {{"tx_id", crypto::DigestHex(result->id)},
                      {"type", type_name},
                      {"committed", wait},
                      {"height", result->height},
                      {"endpoint", result->endpoint},
                      {"verified", wait}};
    PrintJson(j);
    return Status::Ok();
  }
  if (!wait) {
    std::printf("submitted %s tx %s (not waited for; check with `trustmoe ledger tx %s`)\n",
                type_name.c_str(), crypto::DigestHex(result->id).c_str(),
                crypto::DigestHex(result->id).c_str());
    return Status::Ok();
  }
  std::printf("committed %s tx %s\n", type_name.c_str(), crypto::DigestHex(result->id).c_str());
  std::printf("height    %llu\n", static_cast<unsigned long long>(result->height));
  std::printf("proof     verified against genesis %s (%s)\n",
              crypto::DigestHex(genesis.Hash()).c_str(),
              CertLine(genesis, result->committed->tx.cert).c_str());
  return Status::Ok();
}

Status CheckLength(const std::string& value, uint32_t max, const std::string& what, bool required) {
  if (required && value.empty()) return Status::InvalidArgument(what + " must not be empty");
  if (value.size() > max) {
    return Status::InvalidArgument(what + " is " + std::to_string(value.size()) +
                                   " bytes, at most " + std::to_string(max) + " allowed");
  }
  return Status::Ok();
}

struct PublishArgs {
  std::string node_key;
  std::string role;
  std::string name;
  std::string endpoint;
  std::string cid;
  std::string arch;
  uint64_t size = 0;
};
PublishArgs& Publish() {
  static PublishArgs args;
  return args;
}

Status NodeRegister() {
  PublishArgs& a = Publish();
  ledger::RegisterNode body;
  TRUSTMOE_ASSIGN_OR_RETURN(body.key, ParsePublicKeyArg(a.node_key, "--node-key"));
  auto role = ledger::ParseNodeRole(a.role);
  if (!role.ok()) {
    return Status::InvalidArgument("--role '" + a.role +
                                   "' is not one of edge, gate, researcher, validator, auditor");
  }
  body.role = *role;
  TRUSTMOE_RETURN_IF_ERROR(CheckLength(a.name, ledger::kNameBytesMax, "--name", true));
  TRUSTMOE_RETURN_IF_ERROR(CheckLength(a.endpoint, ledger::kEndpointBytesMax, "--endpoint", false));
  if (!a.endpoint.empty() && a.endpoint.find(':') == std::string::npos) {
    return Status::InvalidArgument("--endpoint '" + a.endpoint + "' is not host:port");
  }
  body.name = a.name;
  body.endpoint = a.endpoint;
  return SubmitBody(ledger::TxType::kRegisterNode, body.Encode(),
                    [](const ledger::Genesis& genesis, const crypto::PrivateKey& key) {
                      if (key.public_key() == genesis.admin_key) return Status::Ok();
                      return Status::PermissionDenied(
                          "register-node is signed by the genesis admin key " +
                          genesis.admin_key.Hex() + "; --key holds " + key.public_key().Hex());
                    });
}

Status CheckCid(const std::string& cid, const std::string& what) {
  Status s = ledger::CheckCidSyntax(cid);
  if (!s.ok()) {
    return Status::InvalidArgument(what + " '" + cid +
                                   "' is not a CID (sha256-tree: and 64 lowercase hex digits)");
  }
  return s;
}

Status ExpertPublish() {
  PublishArgs& a = Publish();
  TRUSTMOE_RETURN_IF_ERROR(CheckCid(a.cid, "--cid"));
  TRUSTMOE_RETURN_IF_ERROR(CheckLength(a.name, ledger::kNameBytesMax, "--name", true));
  TRUSTMOE_RETURN_IF_ERROR(CheckLength(a.arch, ledger::kNameBytesMax, "--arch", true));
  ledger::PublishExpert body{a.cid, a.name, a.arch, a.size};
  return SubmitBody(ledger::TxType::kPublishExpert, body.Encode());
}

std::string& ExpertCheckPath() {
  static std::string path;
  return path;
}

// Validates an expert file offline: the strict safetensors parser and the expert format
// (docs/formats/expert.md); prints its architecture, size and CID.
Status ExpertCheck() {
  const std::string& path = ExpertCheckPath();
  constexpr uint64_t kExpertFileBytesMax = 8ull << 30;
  auto bytes = ReadFile(path, kExpertFileBytesMax);
  if (!bytes.ok()) return bytes.status().WithContext("expert file " + path);
  auto file = edge::ParseSafetensors(AsBytes(*bytes));
  if (!file.ok()) return file.status().WithContext(path);
  auto spec = edge::ValidateExpert(*file);
  if (!spec.ok()) return spec.status().WithContext(path);
  uint64_t params = 0;
  for (const edge::TensorInfo& t : file->tensors()) {
    uint64_t n = 1;
    for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
    params += n;
  }
  const std::string cid = crypto::ComputeCid(AsBytes(*bytes)).ToString();
  if (Flags().json) {
    ordered_json j;
    j["file"] = path;
    j["ok"] = true;
    j["arch"] = spec->arch;
    j["d_model"] = spec->d_model;
    j["d_ff"] = spec->d_ff;
    j["dtype"] = std::string(edge::DTypeName(spec->dtype));
    j["parameters"] = params;
    j["bytes"] = bytes->size();
    j["cid"] = cid;
    PrintJson(j);
  } else {
    std::printf("expert OK  %s\n", path.c_str());
    std::printf("arch       %s, d_model %lld, d_ff %lld, %s\n", spec->arch.c_str(),
                static_cast<long long>(spec->d_model), static_cast<long long>(spec->d_ff),
                std::string(edge::DTypeName(spec->dtype)).c_str());
    std::printf("parameters %llu (%s)\n", static_cast<unsigned long long>(params),
                HumanBytes(bytes->size()).c_str());
    std::printf("cid        %s\n", cid.c_str());
  }
  return Status::Ok();
}

// ---- expert call: one verified call of an edge by hand ----

struct CallArgs {
  std::string edge;
  std::string cid;
  std::string input;
  std::string grad_output;
  std::string output;
  std::string job = "manual";
  uint64_t step = 0;
};

CallArgs& Call() {
  static CallArgs args;
  return args;
}

// Calls EdgeService.Forward (or Backward with --grad-output), writes the output, and checks the
// commitment the edge signed against the genesis: signer, chain id, job, step, expert, and the
// CIDs of the bytes sent and received. With validators, waits until the chain has it.
Status ExpertCall() {
  const CallArgs& a = Call();
  std::string edge = a.edge;
  if (edge.empty() && std::getenv("TRUSTMOE_EDGE")) edge = std::getenv("TRUSTMOE_EDGE");
  if (edge.empty()) return Status::InvalidArgument("pass --edge host:port (or set TRUSTMOE_EDGE)");
  TRUSTMOE_RETURN_IF_ERROR(CheckCid(a.cid, "--cid"));
  constexpr uint64_t kTensorBytesMax = 1ull << 30;
  auto input = ReadFile(a.input, kTensorBytesMax);
  if (!input.ok()) return input.status().WithContext("--input");
  std::string grad_output;
  if (!a.grad_output.empty()) {
    auto g = ReadFile(a.grad_output, kTensorBytesMax);
    if (!g.ok()) return g.status().WithContext("--grad-output");
    grad_output = std::move(*g);
  }
  TRUSTMOE_ASSIGN_OR_RETURN(ledger::Genesis genesis, LoadGenesis(nullptr));
  TRUSTMOE_ASSIGN_OR_RETURN(net::TransportConfig transport, TransportFromFlags());
  transport.message_bytes_max = 1 << 30;
  TRUSTMOE_ASSIGN_OR_RETURN(auto channel, net::MakeChannel(edge, transport));
  auto stub = v1::EdgeService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(5));
  v1::CallResponse response;
  grpc::Status status;
  const bool backward = !a.grad_output.empty();
  if (backward) {
    v1::BackwardRequest request;
    request.set_job(a.job);
    request.set_step(a.step);
    request.set_expert_cid(a.cid);
    request.set_input(*input);
    request.set_grad_output(grad_output);
    status = stub->Backward(&ctx, request, &response);
  } else {
    v1::ForwardRequest request;
    request.set_job(a.job);
    request.set_step(a.step);
    request.set_expert_cid(a.cid);
    request.set_input(*input);
    status = stub->Forward(&ctx, request, &response);
  }
  if (!status.ok()) return net::FromGrpcStatus(status).WithContext("edge " + edge);

  // The commitment, checked before the output is kept.
  auto tx = ledger::Tx::Decode(AsBytes(response.result_tx()), genesis.params.tx_bytes_max);
  if (!tx.ok()) return tx.status().WithContext("the edge's commitment");
  TRUSTMOE_RETURN_IF_ERROR(tx->VerifySignature(genesis.chain_id).WithContext("the edge's commitment"));
  if (tx->type != static_cast<uint8_t>(ledger::TxType::kExpertResult)) {
    return Status::DataLoss("the edge's commitment is not an expert-result transaction");
  }
  auto body = ledger::ExpertResultBody::Decode(tx->body);
  if (!body.ok()) return body.status().WithContext("the edge's commitment");
  const std::string output_cid = crypto::ComputeCid(AsBytes(response.output())).ToString();
  const std::string input_cid = crypto::ComputeCid(AsBytes(*input)).ToString();
  std::vector<std::string> wrong;
  if (body->job != a.job) wrong.push_back("job");
  if (body->step != a.step) wrong.push_back("step");
  if (body->expert_cid != a.cid) wrong.push_back("expert");
  if (body->input_cid != input_cid) wrong.push_back("input CID");
  if (body->output_cid != output_cid) wrong.push_back("output CID");
  if (backward && body->grad_output_cid != crypto::ComputeCid(AsBytes(grad_output)).ToString()) {
    wrong.push_back("grad_output CID");
  }
  const ledger::TxId id = pbft::ComputeTxId(AsBytes(response.result_tx()));
  if (response.result_id() != std::string(id.begin(), id.end())) wrong.push_back("result id");
  if (!wrong.empty()) {
    std::string list;
    for (const std::string& w : wrong) list += (list.empty() ? "" : ", ") + w;
    return Status::DataLoss("the edge's commitment does not match the call (" + list +
                            "): the output is not kept");
  }
  TRUSTMOE_RETURN_IF_ERROR(WriteFileAtomic(a.output, response.output()));
  std::printf("%s of %s on edge %s: %llu rows -> %s\n", backward ? "backward" : "forward",
              a.cid.c_str(), edge.c_str(), static_cast<unsigned long long>(body->rows),
              a.output.c_str());
  std::printf("commitment verified: expert-result tx %s\n", ToHex(id).c_str());
  std::printf("  signed by edge %s (chain %s), job %s step %llu\n", tx->signer.Hex().c_str(),
              genesis.chain_id.c_str(), body->job.c_str(),
              static_cast<unsigned long long>(body->step));
  std::printf("  input  %s\n  output %s\n", input_cid.c_str(), output_cid.c_str());

  // With validators: wait for the chain to order it (the edge submits it itself).
  auto options = ClientOptionsFromFlags();
  if (!options.ok() || Flags().no_wait) return Status::Ok();
  TRUSTMOE_ASSIGN_OR_RETURN(auto client, chain::ChainClient::Create(*options, genesis));
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(Flags().timeout_ms);
  while (true) {
    auto committed = client->GetTx(id);
    if (committed.ok()) {
      std::printf("  on the chain at height %llu (inclusion proof verified), verdict pending\n",
                  static_cast<unsigned long long>(committed->tx.header.height));
      return Status::Ok();
    }
    if (committed.status().code() != StatusCode::kNotFound) return committed.status();
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status::DeadlineExceeded("the edge's result " + ToHex(id) +
                                      " is not on the chain yet; it stays in the edge's outbox "
                                      "until it is: check later with trustmoe ledger tx");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

Status ModelPublish() {
  PublishArgs& a = Publish();
  TRUSTMOE_RETURN_IF_ERROR(CheckCid(a.cid, "--cid"));
  TRUSTMOE_RETURN_IF_ERROR(CheckLength(a.name, ledger::kNameBytesMax, "--name", true));
  ledger::PublishModel body{a.cid, a.name};
  return SubmitBody(ledger::TxType::kPublishModel, body.Encode());
}

// ---- Results and verdicts ----

ordered_json VoteJson(const ledger::Genesis& genesis, const ledger::VoteRecord& v) {
  return {{"validator", v.validator},
          {"name", ValidatorName(genesis, v.validator)},
          {"verdict", std::string(ledger::VerdictName(v.verdict))},
          {"reason", std::string(ledger::RejectReasonName(v.reason))},
          {"detail", v.detail},
          {"height", v.height}};
}

ordered_json ResultJson(const ledger::Genesis& genesis, const chain::ResultEntry& e) {
  const ledger::ResultRecord& r = e.record;
  const ledger::ExpertResultBody& b = r.body;
  ordered_json j = {{"edge", r.edge.Hex()},
                    {"nonce", r.nonce},
                    {"job", b.job},
                    {"step", b.step},
                    {"kind", std::string(ledger::CallKindName(b.kind))},
                    {"expert", b.expert_cid},
                    {"input", b.input_cid}};
  if (!b.grad_output_cid.empty()) j["grad_output"] = b.grad_output_cid;
  j["output"] = b.output_cid;
  j["rows"] = b.rows;
  j["dtype"] = std::string(ledger::ComputeDTypeName(b.dtype));
  j["device"] = b.device;
  j["status"] = std::string(ledger::ResultStatusName(r.status));
  j["reason"] = r.reason;
  j["height"] = r.height;
  j["verdict_height"] = r.verdict_height;
  ordered_json votes = ordered_json::array();
  for (const ledger::VoteRecord& v : e.votes) votes.push_back(VoteJson(genesis, v));
  j["votes"] = votes;
  return j;
}

std::string NonceText(uint64_t nonce) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(nonce));
  return buf;
}

// "3:1": votes to accept and to reject.
std::string VoteCounts(const std::vector<ledger::VoteRecord>& votes) {
  size_t accepted = 0;
  for (const ledger::VoteRecord& v : votes) accepted += v.verdict == ledger::Verdict::kAccepted;
  return std::to_string(accepted) + ":" + std::to_string(votes.size() - accepted);
}

std::string& JobArg() {
  static std::string job;
  return job;
}

Status CheckJobName(const std::string& job, const std::string& what) {
  return CheckLength(job, ledger::kJobBytesMax, what, true);
}

ordered_json JobRecordJson(const ledger::JobRecord& r) {
  return {{"status", std::string(ledger::JobStatusName(r.status))},
          {"gate", r.gate.Hex()},
          {"researcher", r.researcher.Hex()},
          {"request_nonce", r.request_nonce},
          {"spec_sha256", crypto::DigestHex(r.spec_sha256)},
          {"submitted_height", r.submitted_height},
          {"updated_height", r.updated_height},
          {"events", r.events},
          {"metrics", JobMetricsJson(r.metrics)},
          {"checkpoint_cid", r.checkpoint_cid},
          {"output_cid", r.output_cid},
          {"detail", r.detail}};
}

ordered_json PlacementJson(const std::vector<ledger::PlacementRecord>& placement) {
  ordered_json out = ordered_json::array();
  for (const ledger::PlacementRecord& p : placement) {
    out.push_back({{"index", p.entry.index},
                   {"expert", p.entry.expert_cid},
                   {"edges", EdgesJson(p.entry.edges)},
                   {"height", p.height}});
  }
  return out;
}

void PrintJobState(const std::string& job, const ledger::JobState& state) {
  const ledger::JobRecord& r = state.record;
  const ledger::JobMetrics& m = r.metrics;
  std::printf("job          %s\n", job.c_str());
  std::printf("status       %s (%u events; submitted at block %llu, updated at block %llu)\n",
              std::string(ledger::JobStatusName(r.status)).c_str(), r.events,
              static_cast<unsigned long long>(r.submitted_height),
              static_cast<unsigned long long>(r.updated_height));
  std::printf("gate         %s\n", r.gate.Hex().c_str());
  std::printf("researcher   %s (request nonce %llu, spec sha256 %s)\n", r.researcher.Hex().c_str(),
              static_cast<unsigned long long>(r.request_nonce),
              crypto::DigestHex(r.spec_sha256).c_str());
  std::printf("metrics      step %llu  loss %.6g  accuracy %.4f  verified %llu  rejected %llu\n",
              static_cast<unsigned long long>(m.step), m.loss, m.accuracy,
              static_cast<unsigned long long>(m.verified),
              static_cast<unsigned long long>(m.rejected));
  std::printf("checkpoint   %s\n", r.checkpoint_cid.empty() ? "-" : r.checkpoint_cid.c_str());
  std::printf("output       %s\n", r.output_cid.empty() ? "-" : r.output_cid.c_str());
  if (!r.detail.empty()) std::printf("detail       %s\n", QuoteForMessage(r.detail, 256).c_str());
  std::printf("placement    %zu entries\n", state.placement.size());
  if (!state.placement.empty()) {
    std::printf("  %-8s %-76s %7s %s\n", "INDEX", "EXPERT", "HEIGHT", "EDGES");
    for (const ledger::PlacementRecord& p : state.placement) {
      std::string edges;
      for (const crypto::PublicKey& e : p.entry.edges) {
        edges += (edges.empty() ? "" : ",") + e.Hex().substr(0, 16);
      }
      std::printf("  %-8u %-76s %7llu %s\n", p.entry.index, p.entry.expert_cid.c_str(),
                  static_cast<unsigned long long>(p.height), edges.c_str());
    }
  }
  std::printf("\n");
}

// Every call of one job with its verdict, in step order, and how many are settled; first, when
// job/<JOB> exists, the job's record and placement.
Status LedgerJob() {
  const std::string& job = JobArg();
  TRUSTMOE_RETURN_IF_ERROR(CheckJobName(job, "JOB"));
  TRUSTMOE_ASSIGN_OR_RETURN(Session session, OpenSession());
  std::optional<ledger::JobState> job_state;
  // A job name that is not a job id (e.g. "manual" for calls made by hand) has no record.
  if (ledger::CheckJobId(job).ok()) {
    TRUSTMOE_ASSIGN_OR_RETURN(job_state, ledger::ReadJobState(session.source->State(), job));
  }
  TRUSTMOE_ASSIGN_OR_RETURN(std::vector<chain::ResultEntry> results,
                            session.source->JobResults(job));
  std::stable_sort(results.begin(), results.end(),
                   [](const chain::ResultEntry& a, const chain::ResultEntry& b) {
                     return std::tie(a.record.body.step, a.record.height) <
                            std::tie(b.record.body.step, b.record.height);
                   });
  std::map<ledger::ResultStatus, uint64_t> counts;
  for (const chain::ResultEntry& e : results) ++counts[e.record.status];
  const uint64_t accepted = counts[ledger::ResultStatus::kAccepted];
  const uint64_t rejected = counts[ledger::ResultStatus::kRejected];
  const uint64_t pending = counts[ledger::ResultStatus::kPending];
  if (Flags().json) {
    ordered_json all = ordered_json::array();
    for (const chain::ResultEntry& e : results) all.push_back(ResultJson(session.genesis, e));
    PrintJson(
        {{"job", job},
         {"results", results.size()},
         {"accepted", accepted},
         {"rejected", rejected},
         {"pending", pending},
         {"source", session.source->Describe()},
         {"record", job_state ? JobRecordJson(job_state->record) : ordered_json()},
         {"placement", job_state ? PlacementJson(job_state->placement) : ordered_json::array()},
         {"calls", all}});
    return Status::Ok();
  }
  if (job_state) PrintJobState(job, *job_state);
  std::printf("%-16s %-16s %-8s %6s %6s %-12s %-8s %7s %7s %-5s %s\n", "EDGE", "NONCE", "KIND",
              "STEP", "ROWS", "DTYPE/DEV", "STATUS", "HEIGHT", "VERDICT", "VOTES", "REASON");
  for (const chain::ResultEntry& e : results) {
    const ledger::ResultRecord& r = e.record;
    const std::string dtype =
        std::string(ledger::ComputeDTypeName(r.body.dtype)) + "/" + r.body.device;
    const std::string verdict_at = r.verdict_height == 0 ? "-" : std::to_string(r.verdict_height);
    std::printf("%-16s %-16s %-8s %6llu %6llu %-12s %-8s %7llu %7s %-5s %s\n",
                r.edge.Hex().substr(0, 16).c_str(), NonceText(r.nonce).c_str(),
                std::string(ledger::CallKindName(r.body.kind)).c_str(),
                static_cast<unsigned long long>(r.body.step),
                static_cast<unsigned long long>(r.body.rows), dtype.c_str(),
                std::string(ledger::ResultStatusName(r.status)).c_str(),
                static_cast<unsigned long long>(r.height), verdict_at.c_str(),
                VoteCounts(e.votes).c_str(), r.reason.empty() ? "-" : r.reason.c_str());
  }
  std::printf("job %s: %zu calls: %llu accepted, %llu rejected, %llu pending (%s)\n", job.c_str(),
              results.size(), static_cast<unsigned long long>(accepted),
              static_cast<unsigned long long>(rejected), static_cast<unsigned long long>(pending),
              session.source->Describe().c_str());
  return Status::Ok();
}

struct VerdictArgs {
  std::string job;
  std::string edge;
  std::string from_height;
  bool follow = false;
  uint64_t count = 0;
};
VerdictArgs& Verdicts() {
  static VerdictArgs args;
  return args;
}

void PrintVerdictRowHeader() {
  std::printf("%-7s %-16s %-16s %-20s %6s %-8s %-8s %-5s %s\n", "VERDICT", "EDGE", "NONCE", "JOB",
              "STEP", "KIND", "STATUS", "VOTES", "REASON");
}

void PrintVerdictRow(const chain::ResultEntry& e) {
  const ledger::ResultRecord& r = e.record;
  std::printf("%-7llu %-16s %-16s %-20s %6llu %-8s %-8s %-5s %s\n",
              static_cast<unsigned long long>(r.verdict_height), r.edge.Hex().substr(0, 16).c_str(),
              NonceText(r.nonce).c_str(), r.body.job.c_str(),
              static_cast<unsigned long long>(r.body.step),
              std::string(ledger::CallKindName(r.body.kind)).c_str(),
              std::string(ledger::ResultStatusName(r.status)).c_str(), VoteCounts(e.votes).c_str(),
              r.reason.empty() ? "-" : r.reason.c_str());
}

// Online only: the verdicts of blocks --from-height..head, or on as they commit (--follow).
Status LedgerVerdicts() {
  const VerdictArgs& a = Verdicts();
  chain::VerdictQuery query;
  if (!a.job.empty()) TRUSTMOE_RETURN_IF_ERROR(CheckJobName(a.job, "--job"));
  query.job = a.job;
  if (!a.edge.empty()) {
    TRUSTMOE_ASSIGN_OR_RETURN(query.edge, ParsePublicKeyArg(a.edge, "--edge"));
  }
  if (!a.from_height.empty()) {
    TRUSTMOE_ASSIGN_OR_RETURN(query.from_height, ParseHeight(a.from_height));
  }
  TRUSTMOE_ASSIGN_OR_RETURN(Session session, OpenSession());
  if (!session.source->online()) {
    return Status::InvalidArgument(
        "ledger verdicts streams from validators: pass --validator (offline, use `ledger job`)");
  }
  auto& online = static_cast<OnlineSource&>(*session.source);
  if (!a.follow) {
    TRUSTMOE_ASSIGN_OR_RETURN(uint64_t head, online.HeadHeight());
    if (head < query.from_height) {
      if (!Flags().json) {
        std::fprintf(stderr, "no block from %llu on yet (head %llu)\n",
                     static_cast<unsigned long long>(query.from_height),
                     static_cast<unsigned long long>(head));
      }
      return Status::Ok();
    }
    query.to_height = head;
  }
  if (!Flags().json) PrintVerdictRowHeader();
  std::fflush(stdout);
  uint64_t seen = 0;
  TRUSTMOE_RETURN_IF_ERROR(online.client().WatchVerdicts(query, [&](const chain::ResultEntry& e) {
    if (Flags().json) {
      std::printf("%s\n", ResultJson(session.genesis, e).dump().c_str());
    } else {
      PrintVerdictRow(e);
    }
    std::fflush(stdout);
    ++seen;
    return a.count == 0 || seen < a.count;
  }));
  if (!Flags().json && !a.follow) {
    std::fprintf(
        stderr, "%llu verdicts in blocks %llu..%llu, as reported by %s\n",
        static_cast<unsigned long long>(seen), static_cast<unsigned long long>(query.from_height),
        static_cast<unsigned long long>(query.to_height), session.source->Describe().c_str());
  }
  return Status::Ok();
}

struct LiftArgs {
  std::string node;
  std::string reason;
};
LiftArgs& Lift() {
  static LiftArgs args;
  return args;
}

// Clears a blacklisting (and the node's strikes and faults) with the admin key.
Status NodeLift() {
  const LiftArgs& a = Lift();
  ledger::LiftBlacklist body;
  TRUSTMOE_ASSIGN_OR_RETURN(body.key, ParsePublicKeyArg(a.node, "--node"));
  TRUSTMOE_RETURN_IF_ERROR(CheckLength(a.reason, ledger::kLiftReasonBytesMax, "--reason", true));
  body.reason = a.reason;
  return SubmitBody(ledger::TxType::kLiftBlacklist, body.Encode(),
                    [](const ledger::Genesis& genesis, const crypto::PrivateKey& key) {
                      if (key.public_key() == genesis.admin_key) return Status::Ok();
                      return Status::PermissionDenied(
                          "lift-blacklist is signed by the genesis admin key " +
                          genesis.admin_key.Hex() + "; --key holds " + key.public_key().Hex());
                    });
}

// ---- genesis ----

struct GenesisArgs {
  std::string chain_id;
  uint32_t f = 1;
  std::vector<std::string> validators;
  std::string admin_key;
  std::vector<std::string> params;
  std::string out;
  bool force = false;
  std::string created_unix_ms;
};
GenesisArgs& GenesisFlags() {
  static GenesisArgs args;
  return args;
}

// NAME=PUBKEY@HOST:PORT, PUBKEY being 64 hex digits or a public key PEM file.
Result<ledger::GenesisValidator> ParseValidatorSpec(const std::string& spec) {
  const std::string usage = "--validator '" + spec +
                            "': expected NAME=PUBKEY@HOST:PORT (PUBKEY: 64 hex digits or a "
                            "public key PEM file)";
  size_t eq = spec.find('=');
  size_t at = spec.rfind('@');
  if (eq == std::string::npos || eq == 0 || at == std::string::npos || at < eq) {
    return Status::InvalidArgument(usage);
  }
  ledger::GenesisValidator v;
  v.name = spec.substr(0, eq);
  v.endpoint = spec.substr(at + 1);
  size_t colon = v.endpoint.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return Status::InvalidArgument(usage + ": endpoint '" + v.endpoint + "' is not host:port");
  }
  auto port = ParseU64(v.endpoint.substr(colon + 1), "port");
  if (!port.ok() || *port == 0 || *port > 65535) {
    return Status::InvalidArgument(usage + ": port of '" + v.endpoint + "' is not 1..65535");
  }
  auto key = ParsePublicKeyArg(spec.substr(eq + 1, at - eq - 1), "validator " + v.name);
  if (!key.ok()) return key.status();
  v.key = *key;
  return v;
}

Status ApplyParam(const std::string& text, ledger::ChainParams* p, std::set<std::string>* seen) {
  size_t eq = text.find('=');
  if (eq == std::string::npos) {
    return Status::InvalidArgument("--param '" + text + "': expected key=value");
  }
  std::string key = text.substr(0, eq);
  std::string value = text.substr(eq + 1);
  if (!seen->insert(key).second) return Status::InvalidArgument("--param " + key + " given twice");
  const std::string what = "--param " + key;
  auto u32 = [&](uint32_t* out) -> Status {
    TRUSTMOE_ASSIGN_OR_RETURN(uint64_t v, ParseU64(value, what));
    if (v > UINT32_MAX) return Status::InvalidArgument(what + " is too large");
    *out = static_cast<uint32_t>(v);
    return Status::Ok();
  };
  auto u64 = [&](uint64_t* out) -> Status {
    TRUSTMOE_ASSIGN_OR_RETURN(*out, ParseU64(value, what));
    return Status::Ok();
  };
  auto i64 = [&](int64_t* out) -> Status {
    TRUSTMOE_ASSIGN_OR_RETURN(*out, ParseI64(value, what));
    return Status::Ok();
  };
  if (key == "checkpoint_interval") return u64(&p->checkpoint_interval);
  if (key == "watermark_window") return u64(&p->watermark_window);
  if (key == "block_txs_max") return u32(&p->block_txs_max);
  if (key == "block_bytes_max") return u64(&p->block_bytes_max);
  if (key == "tx_bytes_max") return u32(&p->tx_bytes_max);
  if (key == "view_change_timeout_ms") return i64(&p->view_change_timeout_ms);
  if (key == "max_clock_skew_ms") return i64(&p->max_clock_skew_ms);
  if (key == "strike_threshold") return u32(&p->strike_threshold);
  if (key == "fault_threshold") return u32(&p->fault_threshold);
  if (key == "verify_rows_min") return u32(&p->verify_rows_min);
  if (key == "verify_fraction_ppm") return u32(&p->verify_fraction_ppm);
  if (key == "verify_deadline_ms") return i64(&p->verify_deadline_ms);
  if (key == "tolerance_f32_ppm") return u32(&p->tolerance_f32_ppm);
  if (key == "tolerance_bf16_ppm") return u32(&p->tolerance_bf16_ppm);
  if (key == "tolerance_f16_ppm") return u32(&p->tolerance_f16_ppm);
  if (key == "verify_update_fraction_ppm") return u32(&p->verify_update_fraction_ppm);
  if (key == "tolerance_update_ppm") return u32(&p->tolerance_update_ppm);
  return Status::InvalidArgument(
      "--param: unknown parameter '" + key +
      "' (known: checkpoint_interval, watermark_window, block_txs_max, block_bytes_max, "
      "tx_bytes_max, view_change_timeout_ms, max_clock_skew_ms, strike_threshold, "
      "fault_threshold, verify_rows_min, verify_fraction_ppm, verify_deadline_ms, "
      "tolerance_f32_ppm, tolerance_bf16_ppm, tolerance_f16_ppm, verify_update_fraction_ppm, "
      "tolerance_update_ppm)");
}

Result<ledger::Genesis> GenesisFromFlags() {
  GenesisArgs& a = GenesisFlags();
  ledger::Genesis g;
  g.chain_id = a.chain_id;
  g.f = a.f;
  if (a.created_unix_ms.empty()) {
    g.created_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  } else {
    TRUSTMOE_ASSIGN_OR_RETURN(g.created_unix_ms, ParseI64(a.created_unix_ms, "--created-unix-ms"));
  }
  TRUSTMOE_ASSIGN_OR_RETURN(g.admin_key, ParsePublicKeyArg(a.admin_key, "--admin-key"));
  std::set<std::string> names;
  std::set<crypto::PublicKey> keys;
  for (const std::string& spec : a.validators) {
    TRUSTMOE_ASSIGN_OR_RETURN(ledger::GenesisValidator v, ParseValidatorSpec(spec));
    if (!names.insert(v.name).second) {
      return Status::InvalidArgument("--validator: the name '" + v.name + "' is used twice");
    }
    if (!keys.insert(v.key).second) {
      return Status::InvalidArgument("--validator " + v.name +
                                     ": its public key is already another validator's");
    }
    g.validators.push_back(std::move(v));
  }
  if (g.validators.size() < 3ull * g.f + 1) {
    return Status::InvalidArgument(
        std::to_string(g.validators.size()) + " validators cannot tolerate f = " +
        std::to_string(g.f) + " faults: PBFT needs n >= 3f + 1 = " + std::to_string(3 * g.f + 1) +
        " (add --validator entries or lower --f)");
  }
  std::set<std::string> seen;
  for (const std::string& p : a.params) TRUSTMOE_RETURN_IF_ERROR(ApplyParam(p, &g.params, &seen));
  TRUSTMOE_RETURN_IF_ERROR(g.Validate());
  return g;
}

Status WriteGenesis() {
  GenesisArgs& a = GenesisFlags();
  std::error_code ec;
  if (!a.force &&
      std::filesystem::symlink_status(a.out, ec).type() != std::filesystem::file_type::not_found) {
    return Status::AlreadyExists(a.out + " exists: use --force to overwrite it");
  }
  TRUSTMOE_ASSIGN_OR_RETURN(ledger::Genesis g, GenesisFromFlags());
  TRUSTMOE_RETURN_IF_ERROR(WriteFileAtomic(a.out, g.ToJson(), 0644));
  // Read back what was written: the digest printed is the file's.
  TRUSTMOE_ASSIGN_OR_RETURN(ledger::Genesis written, LoadGenesisFile(a.out));
  if (written.Hash() != g.Hash()) {
    return Status::Internal("the genesis read back from " + a.out + " has another digest");
  }
  std::string digest = crypto::DigestHex(written.Hash());
  if (Flags().json) {
    PrintJson({{"path", a.out},
               {"chain_id", written.chain_id},
               {"validators", written.validators.size()},
               {"f", written.f},
               {"digest", digest}});
    return Status::Ok();
  }
  std::printf("wrote %s\n", a.out.c_str());
  std::printf("chain id        %s\n", written.chain_id.c_str());
  std::printf("validators      %zu (f = %u, quorum %u)\n", written.validators.size(), written.f,
              written.Validators().quorum());
  for (size_t i = 0; i < written.validators.size(); ++i) {
    const ledger::GenesisValidator& v = written.validators[i];
    std::printf("  %zu %-12s %s %s\n", i, v.name.c_str(), v.key.Hex().c_str(), v.endpoint.c_str());
  }
  std::printf("admin key       %s\n", written.admin_key.Hex().c_str());
  std::printf("genesis digest  %s\n", digest.c_str());
  return Status::Ok();
}

// Sets `run` to `action` when `cmd` is chosen.
void Bind(CLI::App* cmd, Action* run, Status (*action)()) {
  cmd->callback([run, action] { *run = action; });
}

}  // namespace

void AddGenesisCommands(CLI::App& app, Action* run) {
  GenesisArgs& a = GenesisFlags();
  auto* cmd = app.add_subcommand("genesis", "Create the genesis file of a chain");
  cmd->add_option("--chain-id", a.chain_id, "Chain id, [a-z0-9._-]{1,64}")->required();
  cmd->add_option("--f", a.f, "Faulty validators tolerated (n >= 3f + 1)")->default_val(1);
  cmd->add_option("--validator", a.validators,
                  "NAME=PUBKEY@HOST:PORT, PUBKEY as 64 hex digits or a public key PEM file; "
                  "repeat per validator, in validator id order")
      ->required();
  cmd->add_option("--admin-key", a.admin_key,
                  "Admin public key (PEM file or hex): signs node registrations")
      ->required();
  cmd->add_option("--param", a.params, "Protocol parameter key=value (docs/formats/genesis.md)");
  cmd->add_option("--created-unix-ms", a.created_unix_ms,
                  "Creation time recorded in the file (default: now)");
  cmd->add_option("-o,--out", a.out, "Genesis file to write")->required();
  cmd->add_flag("--force", a.force, "Overwrite an existing file");
  cmd->add_flag("--json", Flags().json, "Machine-readable output");
  Bind(cmd, run, WriteGenesis);
}

void AddLedgerCommands(CLI::App& app, Action* run) {
  auto* ledger = app.add_subcommand(
      "ledger",
      "Read and verify the ledger against a genesis file: online from validators "
      "(--validator) or offline from a copy of a data directory (--data-dir)");
  ledger->require_subcommand(1);
  ledger->fallthrough();
  AddConnectionOptions(ledger, true);

  Bind(ledger->add_subcommand("head", "The last committed block, verified"), run, LedgerHead);

  auto* blocks = ledger->add_subcommand("blocks", "One line per block, each verified");
  blocks->add_option("--from", Range().from, "First height (default 1)");
  blocks->add_option("--to", Range().to, "Last height (default: the head)");
  Bind(blocks, run, LedgerBlocks);

  auto* watch = ledger->add_subcommand(
      "watch", "Online: verified blocks from --from on, then each new block as it commits");
  watch->add_option("--from", Range().from, "First height (default 1)");
  watch->add_option("--count", WatchCount(), "Stop after this many blocks (default: never)");
  Bind(watch, run, LedgerWatch);

  auto* block = ledger->add_subcommand("block", "A block's header, transactions and certificate");
  block->add_option("HEIGHT", HeightArg(), "Block height (1..head)")->required();
  Bind(block, run, LedgerBlock);

  auto* tx = ledger->add_subcommand("tx", "A committed transaction with its verified proof");
  tx->add_option("TX_ID", TxFlags().id, "Transaction id (64 hex digits)")->required();
  tx->add_option("--proof-out", TxFlags().proof_out,
                 "Also write a self-contained proof file for `ledger proof --proof-file`");
  Bind(tx, run, LedgerTx);

  auto* verify = ledger->add_subcommand(
      "verify", "Verify the whole chain; exits non-zero naming the first bad block");
  verify->add_flag("--no-state", NoStateFlag(),
                   "Online: check links, tx roots and certificates only (no state replay)");
  Bind(verify, run, LedgerVerify);

  auto* proof = ledger->add_subcommand(
      "proof",
      "Check a transaction's inclusion proof against the genesis (offline with "
      "--proof-file)");
  proof->add_option("TX_ID", TxFlags().id, "Transaction id (64 hex digits)");
  proof->add_flag("--verify", TxFlags().verify, "Verify the proof (always done)");
  proof->add_option("--proof-file", TxFlags().proof_file,
                    "Proof file written by `ledger tx ID --proof-out F` (nothing else is read)");
  proof->add_option("--proof-out", TxFlags().proof_out, "Write the proof to this file");
  Bind(proof, run, LedgerProof);

  Bind(ledger->add_subcommand("nodes", "Registered nodes with reputation and blacklist"), run,
       LedgerNodes);
  Bind(ledger->add_subcommand("experts", "Published experts"), run, LedgerExperts);
  Bind(ledger->add_subcommand("models", "Published models"), run, LedgerModels);

  auto* job = ledger->add_subcommand(
      "job",
      "A job's record and placement (when a gate recorded it) and every call of the job with "
      "its verdict (accepted, rejected or pending) and votes");
  job->add_option("JOB", JobArg(), "Job id or name (1..128 bytes)")->required();
  Bind(job, run, LedgerJob);

  VerdictArgs& v = Verdicts();
  auto* verdicts = ledger->add_subcommand(
      "verdicts",
      "Online: verdicts on expert results by the block that finalized them, up to the head or "
      "on as they commit (--follow)");
  verdicts->add_option("--job", v.job, "Only this job's results");
  verdicts->add_option("--edge", v.edge, "Only this edge's results (public key hex or PEM file)");
  verdicts->add_option("--from-height", v.from_height, "First block (default 1)");
  verdicts->add_flag("--follow", v.follow, "After the head, print each new verdict as it commits");
  verdicts->add_option("--count", v.count, "Stop after this many verdicts (default: never)");
  Bind(verdicts, run, LedgerVerdicts);
}

void AddNodeCommands(CLI::App& app, Action* run) {
  auto* node = app.add_subcommand("node", "Register nodes on the chain and lift blacklistings");
  node->require_subcommand(1);
  node->fallthrough();
  AddConnectionOptions(node, false);
  AddSubmitOptions(node);
  PublishArgs& a = Publish();
  auto* reg = node->add_subcommand(
      "register", "Register (or update) a node's key, role, name and endpoint (admin key)");
  reg->add_option("--node-key", a.node_key, "The node's public key (PEM file or hex)")->required();
  reg->add_option("--role", a.role, "edge, gate, researcher, validator or auditor")->required();
  reg->add_option("--name", a.name, "Name of the node")->required();
  reg->add_option("--endpoint", a.endpoint, "host:port of its service (optional)");
  Bind(reg, run, NodeRegister);
  LiftArgs& l = Lift();
  auto* lift = node->add_subcommand(
      "lift", "Lift the blacklisting of a node and clear its strikes and faults (admin key)");
  lift->add_option("--node", l.node, "The node's public key (hex or public key PEM file)")
      ->required();
  lift->add_option("--reason", l.reason, "Why it is lifted (1..256 bytes, recorded on the chain)")
      ->required();
  Bind(lift, run, NodeLift);
}

void AddExpertCommands(CLI::App& app, Action* run) {
  auto* expert = app.add_subcommand(
      "expert", "Make, check and run expert files; publish experts on the chain");
  expert->require_subcommand(1);
  expert->fallthrough();
  AddConnectionOptions(expert, false);
  AddSubmitOptions(expert);
  PublishArgs& a = Publish();
  auto* publish = expert->add_subcommand("publish", "Record an expert stored under a CID");
  publish->add_option("--cid", a.cid, "CID of the expert file in the store")->required();
  publish->add_option("--name", a.name, "Name, e.g. fmnist-moe/expert-3")->required();
  publish->add_option("--arch", a.arch, "Architecture, e.g. swiglu")->required();
  publish->add_option("--size", a.size, "Size of the expert file in bytes")->required();
  Bind(publish, run, ExpertPublish);
  auto* check = expert->add_subcommand(
      "check", "Validate an expert file offline (safetensors layout, architecture, shapes)");
  check->add_option("FILE", ExpertCheckPath(), "Expert file (.safetensors)")->required();
  Bind(check, run, ExpertCheck);
  CallArgs& c = Call();
  auto* call = expert->add_subcommand(
      "call", "Call an expert on an edge and verify the result commitment it signs");
  call->add_option("--edge", c.edge, "Edge endpoint host:port (default: $TRUSTMOE_EDGE)");
  call->add_option("--cid", c.cid, "CID of the expert file")->required();
  call->add_option("--input", c.input, "Activations file x")->required();
  call->add_option("--grad-output", c.grad_output, "Backward: activations file dL/dy");
  call->add_option("-o,--output", c.output, "Where to write y (or grad_input)")->required();
  call->add_option("--job", c.job, "Job id recorded in the commitment (default: manual)");
  call->add_option("--step", c.step, "Step recorded in the commitment");
  Bind(call, run, ExpertCall);
  AddExpertFileCommands(expert, run);
}

void AddModelCommands(CLI::App& app, Action* run) {
  auto* model = app.add_subcommand("model", "Publish models on the chain");
  model->require_subcommand(1);
  model->fallthrough();
  AddConnectionOptions(model, false);
  AddSubmitOptions(model);
  PublishArgs& a = Publish();
  auto* publish = model->add_subcommand("publish", "Record a model manifest stored under a CID");
  publish->add_option("--cid", a.cid, "CID of the model manifest in the store")->required();
  publish->add_option("--name", a.name, "Name of the model")->required();
  Bind(publish, run, ModelPublish);
}

}  // namespace trustmoe::cli
