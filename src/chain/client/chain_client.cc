#include "chain/client/chain_client.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <exception>
#include <set>
#include <thread>

#include "crypto/sha256.h"
#include "trustmoe/v1/chain.grpc.pb.h"

namespace trustmoe::chain {

struct ChainClient::Endpoint {
  std::string address;
  std::unique_ptr<v1::ChainService::Stub> stub;
};

namespace {

constexpr uint32_t kListLimitMax = 1000;
constexpr uint32_t kCertBytesMax = 64 * 1024;

void SetDeadline(grpc::ClientContext* ctx, int64_t ms) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(ms));
}

std::string HeightText(uint64_t height) { return "block " + std::to_string(height); }

Result<ledger::Digest> DigestField(const std::string& bytes, std::string_view what) {
  if (bytes.size() != 32) {
    return Status::DataLoss(std::string(what) + " is " + std::to_string(bytes.size()) +
                            " bytes, expected 32");
  }
  ledger::Digest d;
  std::copy(bytes.begin(), bytes.end(), d.begin());
  return d;
}

Result<crypto::PublicKey> KeyField(const std::string& bytes, std::string_view what) {
  auto key = crypto::PublicKey::FromBytes(AsBytes(bytes));
  if (!key.ok()) return Status::DataLoss(std::string(what) + ": " + key.status().message());
  return key;
}

// Verification failures are the sender's fault: DataLoss unless they are already an
// authentication failure.
Status AsReceived(const Status& status, const std::string& context) {
  if (status.ok()) return status;
  StatusCode code = status.code() == StatusCode::kUnauthenticated ? StatusCode::kUnauthenticated
                                                                  : StatusCode::kDataLoss;
  return Status(code, context + ": " + status.message());
}

// Read calls: most failures may be one validator's (down, lagging, byzantine); only a
// malformed request is final.
bool FinalForReads(const Status& status) {
  return status.code() == StatusCode::kInvalidArgument ||
         status.code() == StatusCode::kUnimplemented;
}

Result<VerifiedTx> VerifyTxInfo(const ledger::Genesis& genesis, const v1::TxInfo& info) {
  return VerifyTxBytes(genesis, AsBytes(info.tx()), info.height(), AsBytes(info.proof()),
                       AsBytes(info.header()), AsBytes(info.certificate()));
}

std::string Hex(const std::string& bytes) { return ToHex(AsBytes(bytes)); }

std::string NonceHex(uint64_t nonce) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(nonce));
  return buf;
}

std::string ResultName(const crypto::PublicKey& edge, uint64_t nonce) {
  return "result " + edge.Hex().substr(0, 16) + "/" + NonceHex(nonce);
}

Result<ledger::CallKind> ParseCallKind(std::string_view name) {
  if (name == ledger::CallKindName(ledger::CallKind::kForward)) return ledger::CallKind::kForward;
  if (name == ledger::CallKindName(ledger::CallKind::kBackward)) return ledger::CallKind::kBackward;
  return Status::DataLoss("unknown call kind '" + std::string(name) + "'");
}

Result<ledger::Verdict> ParseVerdict(std::string_view name) {
  if (name == ledger::VerdictName(ledger::Verdict::kAccepted)) return ledger::Verdict::kAccepted;
  if (name == ledger::VerdictName(ledger::Verdict::kRejected)) return ledger::Verdict::kRejected;
  return Status::DataLoss("unknown verdict '" + std::string(name) + "'");
}

Result<ledger::RejectReason> ParseRejectReason(std::string_view name) {
  for (uint8_t r = 0; r <= ledger::kRejectReasonMax; ++r) {
    const auto reason = static_cast<ledger::RejectReason>(r);
    if (name == ledger::RejectReasonName(reason)) return reason;
  }
  return Status::DataLoss("unknown reject reason '" + std::string(name) + "'");
}

Result<ledger::VoteRecord> VoteFromInfo(const v1::VoteInfo& info, size_t validators) {
  if (info.validator_id() >= validators) {
    return Status::DataLoss("vote of validator " + std::to_string(info.validator_id()) +
                            ", which the genesis does not have");
  }
  ledger::VoteRecord vote;
  vote.validator = info.validator_id();
  TRUSTMOE_ASSIGN_OR_RETURN(vote.verdict, ParseVerdict(info.verdict()));
  TRUSTMOE_ASSIGN_OR_RETURN(vote.reason, ParseRejectReason(info.reason()));
  if ((vote.verdict == ledger::Verdict::kAccepted) !=
      (vote.reason == ledger::RejectReason::kNone)) {
    return Status::DataLoss("vote of validator " + std::to_string(vote.validator) + " is " +
                            info.verdict() + " with reason " + info.reason());
  }
  if (info.detail().size() > ledger::kVoteDetailBytesMax) {
    return Status::DataLoss("vote detail over " + std::to_string(ledger::kVoteDetailBytesMax) +
                            " bytes");
  }
  vote.detail = info.detail();
  vote.height = info.height();
  return vote;
}

// A verdict as a validator sent it, checked for what can be checked without the state: every
// field well-formed, the result final, and a quorum of distinct genesis validators voting for
// its verdict (unless it was rejected as it was ordered, for an unpublished expert).
Result<ResultEntry> VerdictFromInfo(const ledger::Genesis& genesis, const v1::VerdictInfo& info) {
  ResultEntry e;
  ledger::ResultRecord& r = e.record;
  TRUSTMOE_ASSIGN_OR_RETURN(r.edge, KeyField(info.edge(), "verdict edge"));
  r.nonce = info.nonce();
  const std::string name = ResultName(r.edge, r.nonce);
  ledger::ExpertResultBody body;
  auto kind = ParseCallKind(info.kind());
  auto dtype = ledger::ParseComputeDType(info.dtype());
  if (!kind.ok()) return kind.status().WithContext(name);
  if (!dtype.ok()) return Status::DataLoss(name + ": " + dtype.status().message());
  body.kind = *kind;
  body.job = info.job();
  body.step = info.step();
  body.expert_cid = info.expert_cid();
  body.input_cid = info.input_cid();
  body.grad_output_cid = info.grad_output_cid();
  body.output_cid = info.output_cid();
  body.rows = info.rows();
  body.dtype = *dtype;
  body.device = info.device();
  // The body's own checks, as the ledger applied them to the edge's transaction.
  auto checked = ledger::ExpertResultBody::Decode(body.Encode());
  if (!checked.ok()) return Status::DataLoss(name + ": " + checked.status().message());
  r.body = std::move(checked).value();
  r.height = info.height();
  r.verdict_height = info.verdict_height();
  r.reason = info.reason();
  TRUSTMOE_ASSIGN_OR_RETURN(ledger::Verdict verdict, ParseVerdict(info.status()));
  r.status = verdict == ledger::Verdict::kAccepted ? ledger::ResultStatus::kAccepted
                                                   : ledger::ResultStatus::kRejected;
  if (r.height == 0 || r.verdict_height < r.height) {
    return Status::DataLoss(name + ": verdict in block " + std::to_string(r.verdict_height) +
                            " of a result ordered in block " + std::to_string(r.height));
  }
  const size_t validators = genesis.validators.size();
  if (static_cast<size_t>(info.votes_size()) > validators) {
    return Status::DataLoss(name + ": more votes than validators");
  }
  uint32_t for_verdict = 0;
  for (const v1::VoteInfo& v : info.votes()) {
    auto vote = VoteFromInfo(v, validators);
    if (!vote.ok()) return vote.status().WithContext(name);
    if (!e.votes.empty() && vote->validator <= e.votes.back().validator) {
      return Status::DataLoss(name + ": votes not in validator order");
    }
    if (vote->verdict == verdict) ++for_verdict;
    e.votes.push_back(std::move(vote).value());
  }
  // A result naming an unpublished expert is rejected as it is ordered, without votes.
  const std::string unpublished(
      ledger::RejectReasonName(ledger::RejectReason::kExpertNotPublished));
  const bool decided_at_ordering = verdict == ledger::Verdict::kRejected &&
                                   r.verdict_height == r.height &&
                                   r.reason.compare(0, unpublished.size(), unpublished) == 0;
  if (!decided_at_ordering && for_verdict < genesis.Validators().quorum()) {
    return Status::DataLoss(name + ": " + info.status() + " with only " +
                            std::to_string(for_verdict) + " votes for it (quorum " +
                            std::to_string(genesis.Validators().quorum()) + ")");
  }
  return e;
}

// StateReader over what validators report through ScanState.
class ReportedState final : public ledger::StateReader {
 public:
  explicit ReportedState(ChainClient* client) : client_(client) {}
  Result<std::optional<Bytes>> Get(const std::string& key) const override {
    TRUSTMOE_ASSIGN_OR_RETURN(ScanPage page, client_->ScanState(key, "", 1));
    if (page.entries.empty() || page.entries[0].first != key) return std::optional<Bytes>();
    return std::optional<Bytes>(std::move(page.entries[0].second));
  }
  Result<std::vector<std::pair<std::string, Bytes>>> Scan(const std::string& prefix,
                                                          const std::string& start_after,
                                                          size_t limit) const override {
    const auto n = static_cast<uint32_t>(std::clamp<size_t>(limit, 1, kListLimitMax));
    TRUSTMOE_ASSIGN_OR_RETURN(ScanPage page, client_->ScanState(prefix, start_after, n));
    return std::move(page.entries);
  }

 private:
  ChainClient* client_;
};

// "<edge hex>/<nonce hex>" after a job index prefix.
Result<std::pair<crypto::PublicKey, uint64_t>> ParseResultSuffix(std::string_view suffix) {
  if (suffix.size() != 64 + 1 + 16 || suffix[64] != '/') {
    return Status::DataLoss("job index key ends in '" + std::string(suffix) + "'");
  }
  auto edge = crypto::PublicKey::FromHex(suffix.substr(0, 64));
  if (!edge.ok()) return Status::DataLoss("job index key: " + edge.status().message());
  uint64_t nonce = 0;
  const char* begin = suffix.data() + 65;
  const char* end = suffix.data() + suffix.size();
  auto [ptr, ec] = std::from_chars(begin, end, nonce, 16);
  if (ec != std::errc() || ptr != end) {
    return Status::DataLoss("job index key: nonce '" + std::string(suffix.substr(65)) +
                            "' is not hex");
  }
  return std::pair{*edge, nonce};
}

Result<std::vector<ledger::VoteRecord>> ReadVotes(const ledger::StateReader& state,
                                                  const crypto::PublicKey& edge, uint64_t nonce,
                                                  size_t validators) {
  const std::string prefix = ledger::VotePrefix(edge, nonce);
  TRUSTMOE_ASSIGN_OR_RETURN(auto entries, state.Scan(prefix, "", std::max<size_t>(validators, 1)));
  std::vector<ledger::VoteRecord> votes;
  for (const auto& [key, value] : entries) {
    auto vote = ledger::VoteRecord::Decode(value);
    if (!vote.ok()) return Status::DataLoss("state entry " + key + ": " + vote.status().message());
    if (vote->validator >= validators || ledger::VoteKey(edge, nonce, vote->validator) != key) {
      return Status::DataLoss("state entry " + key + " holds the vote of validator " +
                              std::to_string(vote->validator));
    }
    votes.push_back(std::move(vote).value());
  }
  return votes;
}

}  // namespace


Result<ledger::StoredBlock> VerifyBlockBytes(const ledger::Genesis& genesis, uint64_t height,
                                             ByteSpan block, ByteSpan cert,
                                             ByteSpan claimed_digest) {
  const std::string where = HeightText(height);
  if (height == 0) return Status::InvalidArgument("block heights start at 1");
  ledger::ValidatorSet validators = genesis.Validators();
  if (cert.size() > kCertBytesMax) return Status::DataLoss(where + ": certificate too large");
  auto decoded_cert =
      ledger::CommitCertificate::Decode(cert, static_cast<uint32_t>(validators.keys.size()));
  if (!decoded_cert.ok()) return AsReceived(decoded_cert.status(), where + ": certificate");
  ledger::StoredBlock out;
  out.height = height;
  out.cert = std::move(decoded_cert).value();
  if (block.empty()) {
    out.digest = pbft::NullBlockDigest(height);
  } else {
    if (block.size() > genesis.params.block_bytes_max + kCertBytesMax) {
      return Status::DataLoss(where + ": " + std::to_string(block.size()) +
                              " bytes, over the genesis block_bytes_max");
    }
    auto decoded = ledger::Block::Decode(block, genesis.Limits());
    if (!decoded.ok()) return AsReceived(decoded.status(), where + ": block bytes");
    if (decoded->header.height != height) {
      return Status::DataLoss(where + ": header says height " +
                              std::to_string(decoded->header.height));
    }
    if (ledger::TxRoot(decoded->txs) != decoded->header.tx_root) {
      return Status::DataLoss(where + ": transactions do not match the header's tx root");
    }
    out.digest = decoded->header.Hash();
    out.block = std::move(decoded).value();
  }
  if (!claimed_digest.empty() &&
      (claimed_digest.size() != 32 ||
       !std::equal(claimed_digest.begin(), claimed_digest.end(), out.digest.begin()))) {
    return Status::DataLoss(where + ": the digest sent does not match the block");
  }
  Status certified = ledger::VerifyCertificate(validators, out.cert, height, out.digest);
  if (!certified.ok()) {
    return Status::Unauthenticated(where + ": commit certificate: " + certified.message());
  }
  return out;
}

Result<VerifiedTx> VerifyTxBytes(const ledger::Genesis& genesis, ByteSpan tx, uint64_t height,
                                 ByteSpan proof, ByteSpan header, ByteSpan cert) {
  if (tx.empty()) return Status::DataLoss("empty transaction");
  if (tx.size() > genesis.params.tx_bytes_max) {
    return Status::DataLoss("transaction of " + std::to_string(tx.size()) +
                            " bytes is over the genesis tx_bytes_max");
  }
  VerifiedTx out;
  out.id = pbft::ComputeTxId(tx);
  out.tx.tx.assign(tx.begin(), tx.end());
  auto decoded_proof = ledger::TxProof::Decode(proof);
  if (!decoded_proof.ok()) return AsReceived(decoded_proof.status(), "inclusion proof");
  out.tx.proof = std::move(decoded_proof).value();
  auto decoded_header = ledger::BlockHeader::Decode(header);
  if (!decoded_header.ok()) return AsReceived(decoded_header.status(), "block header");
  out.tx.header = std::move(decoded_header).value();
  auto decoded_cert =
      ledger::CommitCertificate::Decode(cert, static_cast<uint32_t>(genesis.validators.size()));
  if (!decoded_cert.ok()) return AsReceived(decoded_cert.status(), "commit certificate");
  out.tx.cert = std::move(decoded_cert).value();
  if (out.tx.header.height != height) {
    return Status::DataLoss("the header is of height " + std::to_string(out.tx.header.height) +
                            ", the answer says " + std::to_string(height));
  }
  TRUSTMOE_RETURN_IF_ERROR(VerifyTx(genesis, out));
  return out;
}

Status VerifyTx(const ledger::Genesis& genesis, const VerifiedTx& tx) {
  if (pbft::ComputeTxId(tx.tx.tx) != tx.id) {
    return Status::DataLoss("the transaction bytes do not hash to tx id " +
                            crypto::DigestHex(tx.id));
  }
  Status included = ledger::VerifyTxInclusion(tx.tx.tx, tx.tx.proof, tx.tx.header, tx.tx.cert,
                                              genesis.Validators());
  if (!included.ok()) {
    return AsReceived(included, "inclusion of tx " + crypto::DigestHex(tx.id) + " in " +
                                    HeightText(tx.tx.header.height));
  }
  return Status::Ok();
}

// ---- Proof files ----

std::string TxProofFileJson(const ledger::Genesis& genesis, const VerifiedTx& tx) {
  nlohmann::ordered_json j;
  j["format"] = "trustmoe-tx-proof/v1";
  j["chain_id"] = genesis.chain_id;
  j["genesis_digest"] = crypto::DigestHex(genesis.Hash());
  j["tx_id"] = crypto::DigestHex(tx.id);
  j["height"] = tx.tx.header.height;
  j["tx"] = ToHex(tx.tx.tx);
  j["proof"] = ToHex(tx.tx.proof.Encode());
  j["header"] = ToHex(tx.tx.header.Encode());
  j["certificate"] = ToHex(tx.tx.cert.Encode());
  return j.dump(2) + "\n";
}

Result<VerifiedTx> ParseTxProofFile(const ledger::Genesis& genesis, std::string_view text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("proof file is not JSON: ") + e.what());
  }
  if (!j.is_object()) return Status::InvalidArgument("proof file: expected a JSON object");
  auto str = [&](const char* key) -> Result<std::string> {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) {
      return Status::InvalidArgument(std::string("proof file: missing string field '") + key + "'");
    }
    return it->get<std::string>();
  };
  auto hex = [&](const char* key) -> Result<Bytes> {
    TRUSTMOE_ASSIGN_OR_RETURN(std::string s, str(key));
    auto bytes = FromHex(s);
    if (!bytes.ok()) {
      return Status::InvalidArgument(std::string("proof file: field '") + key +
                                     "': " + bytes.status().message());
    }
    return bytes;
  };
  TRUSTMOE_ASSIGN_OR_RETURN(std::string format, str("format"));
  if (format != "trustmoe-tx-proof/v1") {
    return Status::InvalidArgument("proof file: unknown format '" + format + "'");
  }
  TRUSTMOE_ASSIGN_OR_RETURN(std::string chain_id, str("chain_id"));
  TRUSTMOE_ASSIGN_OR_RETURN(std::string genesis_hex, str("genesis_digest"));
  if (chain_id != genesis.chain_id || genesis_hex != crypto::DigestHex(genesis.Hash())) {
    return Status::FailedPrecondition("proof file is for chain '" + chain_id + "' (genesis " +
                                      genesis_hex + "), not for this genesis file's chain '" +
                                      genesis.chain_id + "'");
  }
  TRUSTMOE_ASSIGN_OR_RETURN(std::string id_hex, str("tx_id"));
  auto id = crypto::DigestFromHex(id_hex);
  if (!id.ok()) return Status::InvalidArgument("proof file: tx_id: " + id.status().message());
  auto height_it = j.find("height");
  if (height_it == j.end() || !height_it->is_number_unsigned()) {
    return Status::InvalidArgument("proof file: missing unsigned field 'height'");
  }
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes tx, hex("tx"));
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes proof, hex("proof"));
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes header, hex("header"));
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes cert, hex("certificate"));
  TRUSTMOE_ASSIGN_OR_RETURN(
      VerifiedTx out, VerifyTxBytes(genesis, tx, height_it->get<uint64_t>(), proof, header, cert));
  if (out.id != *id) {
    return Status::DataLoss("proof file: the transaction bytes hash to " +
                            crypto::DigestHex(out.id) + ", not to tx_id " + id_hex);
  }
  return out;
}

// ---- Client ----

ChainClient::ChainClient(ChainClientOptions options, ledger::Genesis genesis)
    : options_(std::move(options)),
      genesis_(std::move(genesis)),
      genesis_digest_(genesis_.Hash()),
      validators_(genesis_.Validators()) {}

ChainClient::~ChainClient() = default;

Result<std::vector<ResultEntry>> ReadJobResults(const ledger::StateReader& state,
                                                const std::string& job, size_t validators,
                                                size_t results_max) {
  if (job.empty() || job.size() > ledger::kJobBytesMax) {
    return Status::InvalidArgument("a job name is 1 to " + std::to_string(ledger::kJobBytesMax) +
                                   " bytes, got " + std::to_string(job.size()));
  }
  const std::string prefix = ledger::JobResultPrefix(job);
  std::vector<ResultEntry> out;
  std::string after;
  while (true) {
    TRUSTMOE_ASSIGN_OR_RETURN(auto page, state.Scan(prefix, after, kListLimitMax));
    // A validator may cap pages below the limit: only an empty page ends the listing.
    if (page.empty()) break;
    for (const auto& [key, value] : page) {
      if (key <= after || key.compare(0, prefix.size(), prefix) != 0) {
        return Status::DataLoss("the job index listing does not advance within its prefix");
      }
      after = key;
      if (out.size() >= results_max) {
        return Status::ResourceExhausted("job '" + job + "' has more than " +
                                         std::to_string(results_max) + " results");
      }
      TRUSTMOE_ASSIGN_OR_RETURN(auto id,
                                ParseResultSuffix(std::string_view(key).substr(prefix.size())));
      const std::string result_key = ledger::ResultKey(id.first, id.second);
      TRUSTMOE_ASSIGN_OR_RETURN(std::optional<Bytes> bytes, state.Get(result_key));
      if (!bytes) return Status::DataLoss("job index names " + result_key + ", which is absent");
      auto record = ledger::ResultRecord::Decode(*bytes);
      if (!record.ok()) {
        return Status::DataLoss("state entry " + result_key + ": " + record.status().message());
      }
      if (record->edge != id.first || record->nonce != id.second || record->body.job != job) {
        return Status::DataLoss("state entry " + result_key + " holds another result");
      }
      ResultEntry entry;
      TRUSTMOE_ASSIGN_OR_RETURN(entry.votes, ReadVotes(state, id.first, id.second, validators));
      entry.record = std::move(record).value();
      out.push_back(std::move(entry));
    }
  }
  return out;
}

Result<std::unique_ptr<ChainClient>> ChainClient::Create(ChainClientOptions options,
                                                         ledger::Genesis genesis) {
  if (options.endpoints.empty()) {
    return Status::InvalidArgument("no validator endpoint configured (expected host:port)");
  }
  if (options.rounds_max < 1) return Status::InvalidArgument("rounds_max must be at least 1");
  Status valid = genesis.Validate();
  if (!valid.ok()) return valid.WithContext("genesis");
  std::unique_ptr<ChainClient> client(new ChainClient(std::move(options), std::move(genesis)));
  // Long-lived clients (edges, gates) must find validators soon after an outage: gRPC's
  // default back-off grows to 120 s between connection attempts.
  net::ChannelOptions channel_options;
  channel_options.initial_reconnect_backoff_ms = 200;
  channel_options.max_reconnect_backoff_ms = 2000;
  for (const std::string& address : client->options_.endpoints) {
    auto channel = net::MakeChannel(address, client->options_.transport, channel_options);
    if (!channel.ok()) return channel.status().WithContext("validator endpoint " + address);
    auto endpoint = std::make_unique<Endpoint>();
    endpoint->address = address;
    endpoint->stub = v1::ChainService::NewStub(*channel);
    client->endpoints_.push_back(std::move(endpoint));
  }
  return client;
}

template <typename T>
Result<T> ChainClient::WithFailover(Retry retry, const std::function<Result<T>(Endpoint&)>& call) {
  Status last = Status::Unavailable("no validator endpoint answered");
  const size_t n = endpoints_.size();
  for (int round = 0; round < options_.rounds_max; ++round) {
    bool all_not_found = true;
    size_t start = preferred_.load();
    for (size_t i = 0; i < n; ++i) {
      size_t index = (start + i) % n;
      Endpoint& endpoint = *endpoints_[index];
      Result<T> result = Status::Unknown("no answer");
      try {
        result = call(endpoint);
      } catch (const std::exception& e) {
        result = Status::Internal(std::string("client error: ") + e.what());
      }
      if (result.ok()) {
        preferred_.store(index);
        return result;
      }
      last = result.status().WithContext("validator " + endpoint.address);
      StatusCode code = result.status().code();
      bool retry_next = retry == Retry::kReads ? !FinalForReads(result.status())
                                               : code == StatusCode::kUnavailable;
      if (!retry_next) return last;
      if (code != StatusCode::kNotFound) all_not_found = false;
    }
    // NotFound from every validator is an answer, not a failure to retry.
    if (all_not_found) return last;
  }
  return last;
}

Result<ledger::Genesis> ChainClient::FetchGenesis(const ChainClientOptions& options) {
  if (options.endpoints.empty()) {
    return Status::InvalidArgument("no validator endpoint configured (expected host:port)");
  }
  Status last = Status::Unavailable("no validator endpoint answered");
  for (const std::string& address : options.endpoints) {
    auto channel = net::MakeChannel(address, options.transport);
    if (!channel.ok()) return channel.status().WithContext("validator endpoint " + address);
    try {
      auto stub = v1::ChainService::NewStub(*channel);
      grpc::ClientContext ctx;
      SetDeadline(&ctx, options.rpc_timeout_ms);
      v1::GenesisInfo info;
      grpc::Status status = stub->GetGenesis(&ctx, v1::GetGenesisRequest(), &info);
      if (!status.ok()) {
        last = net::FromGrpcStatus(status).WithContext("validator " + address);
        continue;
      }
      auto genesis = ledger::Genesis::FromJson(info.json());
      if (!genesis.ok()) {
        last = AsReceived(genesis.status(), "validator " + address + " sent a bad genesis");
        continue;
      }
      if (Hex(info.digest()) != crypto::DigestHex(genesis->Hash())) {
        last = Status::DataLoss("validator " + address +
                                " sent a genesis whose digest does not match its JSON");
        continue;
      }
      return genesis;
    } catch (const std::exception& e) {
      last = Status::Internal("validator " + address + ": client error: " + e.what());
    }
  }
  return last;
}

// ---- Submit ----

Result<SubmitResult> ChainClient::SubmitTo(Endpoint& endpoint, ByteSpan tx, bool wait) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, options_.rpc_timeout_ms + (wait ? options_.commit_timeout_ms : 0));
  v1::SubmitTxRequest request;
  request.set_tx(tx.data(), tx.size());
  request.set_no_wait(!wait);
  request.set_timeout_ms(options_.commit_timeout_ms);
  v1::SubmitTxResponse response;
  grpc::Status status = endpoint.stub->SubmitTx(&ctx, request, &response);
  if (!status.ok()) return net::FromGrpcStatus(status);
  SubmitResult out;
  out.id = pbft::ComputeTxId(tx);
  out.endpoint = endpoint.address;
  if (response.tx_id() != std::string(out.id.begin(), out.id.end())) {
    return Status::DataLoss("the validator answered with another tx id");
  }
  if (!wait) return out;
  if (!response.has_committed()) {
    return Status::DataLoss("the validator answered without the committed transaction");
  }
  auto verified = VerifyTxInfo(genesis_, response.committed());
  if (!verified.ok()) return verified.status().WithContext("proof of the committed transaction");
  if (verified->id != out.id) {
    return Status::DataLoss("the validator answered with the proof of another transaction");
  }
  out.height = verified->tx.header.height;
  if (response.height() != out.height) {
    return Status::DataLoss("the validator's height " + std::to_string(response.height()) +
                            " differs from its proof's " + std::to_string(out.height));
  }
  out.committed = std::move(verified).value();
  return out;
}

Result<SubmitResult> ChainClient::Submit(ByteSpan tx, bool wait) {
  if (tx.empty() || tx.size() > genesis_.params.tx_bytes_max) {
    return Status::InvalidArgument("transaction of " + std::to_string(tx.size()) +
                                   " bytes (allowed: 1 to " +
                                   std::to_string(genesis_.params.tx_bytes_max) + ")");
  }
  int attempts = 0;
  Result<SubmitResult> result = Status::Internal("not submitted");
  // A refusal that depends on the state (an unregistered signer, a missing record) may come
  // from a validator that has not executed the latest blocks yet — one that lags by a block is
  // normal in PBFT — while the caller's own earlier transaction (a registration, say) is
  // committed. Such a refusal is asked again twice, 0.2 s and 0.4 s later, before it is final.
  for (int round = 0;; ++round) {
    result = WithFailover<SubmitResult>(
        Retry::kUnavailableOnly, [&](Endpoint& endpoint) -> Result<SubmitResult> {
          ++attempts;
          return SubmitTo(endpoint, tx, wait);
        });
    const StatusCode code = result.ok() ? StatusCode::kOk : result.status().code();
    const bool state_dependent = code == StatusCode::kPermissionDenied ||
                                 code == StatusCode::kFailedPrecondition ||
                                 code == StatusCode::kNotFound;
    if (!state_dependent || round == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200 << round));
  }
  // A validator that went away after admitting the transaction may have had it committed: a
  // retry then hears ALREADY_EXISTS, and the committed transaction is what the caller wants.
  if (!result.ok() && attempts > 1 && result.status().code() == StatusCode::kAlreadyExists) {
    auto committed = GetTx(pbft::ComputeTxId(tx));
    if (committed.ok()) {
      SubmitResult out;
      out.id = committed->id;
      out.height = committed->tx.header.height;
      out.committed = std::move(committed).value();
      return out;
    }
  }
  return result;
}

// ---- Reads ----

Result<ReportedHead> ChainClient::GetHead() {
  return WithFailover<ReportedHead>(Retry::kReads, [&](Endpoint& endpoint) -> Result<ReportedHead> {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, options_.rpc_timeout_ms);
    v1::HeadInfo info;
    grpc::Status status = endpoint.stub->GetHead(&ctx, v1::GetHeadRequest(), &info);
    if (!status.ok()) return net::FromGrpcStatus(status);
    if (info.chain_id() != genesis_.chain_id ||
        info.genesis_digest() != std::string(genesis_digest_.begin(), genesis_digest_.end())) {
      return Status::FailedPrecondition("runs chain '" + info.chain_id() + "' with genesis " +
                                        Hex(info.genesis_digest()) + ", not the genesis file's '" +
                                        genesis_.chain_id + "' " +
                                        crypto::DigestHex(genesis_digest_));
    }
    ReportedHead head;
    head.height = info.height();
    TRUSTMOE_ASSIGN_OR_RETURN(head.digest, DigestField(info.digest(), "head digest"));
    TRUSTMOE_ASSIGN_OR_RETURN(head.state_root, DigestField(info.state_root(), "state root"));
    head.view = info.view();
    head.validator_id = info.validator_id();
    head.endpoint = endpoint.address;
    return head;
  });
}

Result<ledger::StoredBlock> ChainClient::GetBlock(uint64_t height) {
  if (height == 0) return Status::InvalidArgument("block heights start at 1");
  return WithFailover<ledger::StoredBlock>(
      Retry::kReads, [&](Endpoint& endpoint) -> Result<ledger::StoredBlock> {
        grpc::ClientContext ctx;
        SetDeadline(&ctx, options_.rpc_timeout_ms);
        v1::GetBlockRequest request;
        request.set_height(height);
        v1::BlockInfo info;
        grpc::Status status = endpoint.stub->GetBlock(&ctx, request, &info);
        if (!status.ok()) return net::FromGrpcStatus(status);
        if (info.height() != height) {
          return Status::DataLoss("asked for " + HeightText(height) + ", got " +
                                  HeightText(info.height()));
        }
        return VerifyBlockBytes(genesis_, height, AsBytes(info.block()),
                                AsBytes(info.certificate()), AsBytes(info.digest()));
      });
}

Result<VerifiedTx> ChainClient::GetTx(const ledger::TxId& id) {
  return WithFailover<VerifiedTx>(Retry::kReads, [&](Endpoint& endpoint) -> Result<VerifiedTx> {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, options_.rpc_timeout_ms);
    v1::GetTxRequest request;
    request.set_tx_id(id.data(), id.size());
    v1::TxInfo info;
    grpc::Status status = endpoint.stub->GetTx(&ctx, request, &info);
    if (!status.ok()) return net::FromGrpcStatus(status);
    TRUSTMOE_ASSIGN_OR_RETURN(VerifiedTx tx, VerifyTxInfo(genesis_, info));
    if (tx.id != id) return Status::DataLoss("answered with another transaction");
    return tx;
  });
}

Result<std::vector<NodeEntry>> ChainClient::ListNodes(const std::string& start_after,
                                                      uint32_t limit) {
  if (limit == 0 || limit > kListLimitMax) {
    return Status::InvalidArgument("list limit must be 1 to " + std::to_string(kListLimitMax));
  }
  return WithFailover<std::vector<NodeEntry>>(
      Retry::kReads, [&](Endpoint& endpoint) -> Result<std::vector<NodeEntry>> {
        grpc::ClientContext ctx;
        SetDeadline(&ctx, options_.rpc_timeout_ms);
        v1::ListNodesRequest request;
        request.set_start_after(start_after);
        request.set_limit(limit);
        v1::ListNodesResponse response;
        grpc::Status status = endpoint.stub->ListNodes(&ctx, request, &response);
        if (!status.ok()) return net::FromGrpcStatus(status);
        if (static_cast<uint32_t>(response.nodes_size()) > limit) {
          return Status::DataLoss("answered more nodes than asked for");
        }
        std::vector<NodeEntry> out;
        for (const v1::NodeInfo& info : response.nodes()) {
          NodeEntry e;
          TRUSTMOE_ASSIGN_OR_RETURN(e.record.key, KeyField(info.public_key(), "node key"));
          auto role = ledger::ParseNodeRole(info.role());
          if (!role.ok()) return Status::DataLoss("node role '" + info.role() + "' is unknown");
          e.record.role = *role;
          e.record.name = info.name();
          e.record.endpoint = info.endpoint();
          e.record.registered_height = info.registered_height();
          e.reputation.accepted = info.accepted();
          e.reputation.rejected = info.rejected();
          e.reputation.strikes = info.strikes();
          e.reputation.blacklisted = info.blacklisted();
          e.reputation.blacklisted_height = info.blacklisted_height();
          e.reputation.faults = info.faults();
          e.reputation.contradictions = info.contradictions();
          e.reputation.blacklist_reason = info.blacklist_reason();
          out.push_back(std::move(e));
        }
        return out;
      });
}

Result<std::vector<ledger::ExpertRecord>> ChainClient::ListExperts(const std::string& start_after,
                                                                   uint32_t limit) {
  if (limit == 0 || limit > kListLimitMax) {
    return Status::InvalidArgument("list limit must be 1 to " + std::to_string(kListLimitMax));
  }
  return WithFailover<std::vector<ledger::ExpertRecord>>(
      Retry::kReads, [&](Endpoint& endpoint) -> Result<std::vector<ledger::ExpertRecord>> {
        grpc::ClientContext ctx;
        SetDeadline(&ctx, options_.rpc_timeout_ms);
        v1::ListExpertsRequest request;
        request.set_start_after(start_after);
        request.set_limit(limit);
        v1::ListExpertsResponse response;
        grpc::Status status = endpoint.stub->ListExperts(&ctx, request, &response);
        if (!status.ok()) return net::FromGrpcStatus(status);
        if (static_cast<uint32_t>(response.experts_size()) > limit) {
          return Status::DataLoss("answered more experts than asked for");
        }
        std::vector<ledger::ExpertRecord> out;
        for (const v1::ExpertInfo& info : response.experts()) {
          ledger::ExpertRecord r;
          r.cid = info.cid();
          r.name = info.name();
          r.arch = info.arch();
          r.size = info.size();
          TRUSTMOE_ASSIGN_OR_RETURN(r.publisher, KeyField(info.publisher(), "expert publisher"));
          r.height = info.height();
          out.push_back(std::move(r));
        }
        return out;
      });
}

Result<std::vector<ledger::ModelRecord>> ChainClient::ListModels(const std::string& start_after,
                                                                 uint32_t limit) {
  if (limit == 0 || limit > kListLimitMax) {
    return Status::InvalidArgument("list limit must be 1 to " + std::to_string(kListLimitMax));
  }
  return WithFailover<std::vector<ledger::ModelRecord>>(
      Retry::kReads, [&](Endpoint& endpoint) -> Result<std::vector<ledger::ModelRecord>> {
        grpc::ClientContext ctx;
        SetDeadline(&ctx, options_.rpc_timeout_ms);
        v1::ListModelsRequest request;
        request.set_start_after(start_after);
        request.set_limit(limit);
        v1::ListModelsResponse response;
        grpc::Status status = endpoint.stub->ListModels(&ctx, request, &response);
        if (!status.ok()) return net::FromGrpcStatus(status);
        if (static_cast<uint32_t>(response.models_size()) > limit) {
          return Status::DataLoss("answered more models than asked for");
        }
        std::vector<ledger::ModelRecord> out;
        for (const v1::ModelInfo& info : response.models()) {
          ledger::ModelRecord r;
          r.manifest_cid = info.manifest_cid();
          r.name = info.name();
          TRUSTMOE_ASSIGN_OR_RETURN(r.publisher, KeyField(info.publisher(), "model publisher"));
          r.height = info.height();
          out.push_back(std::move(r));
        }
        return out;
      });
}

Result<ScanPage> ChainClient::ScanStateOn(Endpoint& endpoint, const std::string& prefix,
                                           const std::string& start_after, uint32_t limit) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, options_.rpc_timeout_ms);
  v1::ScanStateRequest request;
  request.set_prefix(prefix);
  request.set_start_after(start_after);
  request.set_limit(limit);
  v1::ScanStateResponse response;
  grpc::Status status = endpoint.stub->ScanState(&ctx, request, &response);
  if (!status.ok()) return net::FromGrpcStatus(status);
  if (static_cast<uint32_t>(response.entries_size()) > limit) {
    return Status::DataLoss("answered more state entries than asked for");
  }
  ScanPage page;
  page.height = response.height();
  for (const v1::StateEntry& e : response.entries()) {
    if (e.key().compare(0, prefix.size(), prefix) != 0) {
      return Status::DataLoss("answered a state key outside the prefix");
    }
    page.entries.emplace_back(e.key(), Bytes(e.value().begin(), e.value().end()));
  }
  return page;
}

Result<ScanPage> ChainClient::ScanState(const std::string& prefix, const std::string& start_after,
                                         uint32_t limit) {
  if (limit == 0 || limit > kListLimitMax) {
    return Status::InvalidArgument("scan limit must be 1 to " + std::to_string(kListLimitMax));
  }
  return WithFailover<ScanPage>(Retry::kReads, [&](Endpoint& endpoint) -> Result<ScanPage> {
    return ScanStateOn(endpoint, prefix, start_after, limit);
  });
}

Result<bool> ChainClient::KeyPresentOnQuorum(const std::string& key, uint32_t agreeing) {
  if (agreeing == 0 || agreeing > endpoints_.size()) {
    return Status::InvalidArgument("cannot ask " + std::to_string(agreeing) + " of " +
                                   std::to_string(endpoints_.size()) + " validators");
  }
  uint32_t present = 0, absent = 0;
  std::string errors;
  for (auto& endpoint : endpoints_) {
    auto page = ScanStateOn(*endpoint, key, "", 1);
    if (!page.ok()) {
      errors += " " + endpoint->address + ": " + page.status().ToString() + ";";
      continue;
    }
    const bool here = !page->entries.empty() && page->entries.front().first == key;
    if (++(here ? present : absent) >= agreeing) return here;
  }
  return Status::Unavailable("fewer than " + std::to_string(agreeing) +
                             " validators agree on state key " + key + " (" +
                             std::to_string(present) + " have it, " + std::to_string(absent) +
                             " do not;" + errors + ")");
}

Result<std::optional<NodeEntry>> ChainClient::GetNode(const crypto::PublicKey& key) {
  const std::string node_key = ledger::NodeKey(key);
  TRUSTMOE_ASSIGN_OR_RETURN(ScanPage node, ScanState(node_key, "", 1));
  if (node.entries.empty() || node.entries[0].first != node_key) {
    return std::optional<NodeEntry>();
  }
  NodeEntry entry;
  auto record = ledger::NodeRecord::Decode(node.entries[0].second);
  if (!record.ok()) return record.status().WithContext("node record from a validator");
  entry.record = *record;
  const std::string rep_key = ledger::ReputationKey(key);
  TRUSTMOE_ASSIGN_OR_RETURN(ScanPage rep, ScanState(rep_key, "", 1));
  if (!rep.entries.empty() && rep.entries[0].first == rep_key) {
    auto reputation = ledger::Reputation::Decode(rep.entries[0].second);
    if (!reputation.ok()) return reputation.status().WithContext("reputation from a validator");
    entry.reputation = *reputation;
  }
  return std::optional<NodeEntry>(std::move(entry));
}

Result<ledger::Genesis> ChainClient::GetGenesis() {
  return WithFailover<ledger::Genesis>(
      Retry::kReads, [&](Endpoint& endpoint) -> Result<ledger::Genesis> {
        grpc::ClientContext ctx;
        SetDeadline(&ctx, options_.rpc_timeout_ms);
        v1::GenesisInfo info;
        grpc::Status status = endpoint.stub->GetGenesis(&ctx, v1::GetGenesisRequest(), &info);
        if (!status.ok()) return net::FromGrpcStatus(status);
        auto genesis = ledger::Genesis::FromJson(info.json());
        if (!genesis.ok()) return AsReceived(genesis.status(), "genesis");
        if (genesis->Hash() != genesis_digest_) {
          return Status::FailedPrecondition("runs genesis " + crypto::DigestHex(genesis->Hash()) +
                                            ", not " + crypto::DigestHex(genesis_digest_));
        }
        return genesis;
      });
}

// ---- Watch ----

Status ChainClient::WatchFrom(Endpoint& endpoint, uint64_t* next_height,
                              ledger::Digest* prev_digest, const BlockCallback& callback,
                              bool* stopped) {
  grpc::ClientContext ctx;  // no deadline: the stream lasts as long as the caller wants
  v1::WatchBlocksRequest request;
  request.set_from_height(*next_height);
  std::unique_ptr<grpc::ClientReader<v1::BlockInfo>> reader =
      endpoint.stub->WatchBlocks(&ctx, request);
  v1::BlockInfo info;
  Status failure;
  while (reader->Read(&info)) {
    if (info.height() != *next_height) {
      failure = Status::DataLoss("sent " + HeightText(info.height()) + " where " +
                                 HeightText(*next_height) + " was due");
      break;
    }
    auto block = VerifyBlockBytes(genesis_, info.height(), AsBytes(info.block()),
                                  AsBytes(info.certificate()), AsBytes(info.digest()));
    if (!block.ok()) {
      failure = block.status();
      break;
    }
    if (block->block && block->block->header.prev_hash != *prev_digest) {
      failure = Status::DataLoss(HeightText(info.height()) +
                                 ": prev_hash does not name the digest of the block before");
      break;
    }
    *prev_digest = block->digest;
    *next_height += 1;
    if (!callback(*block)) {
      *stopped = true;
      break;
    }
  }
  if (!failure.ok() || *stopped) {
    ctx.TryCancel();
    reader->Finish().ok();
    return failure;
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return net::FromGrpcStatus(status);
  return Status::Unavailable("the block stream ended");
}

Status ChainClient::WatchBlocks(uint64_t from_height, const BlockCallback& callback) {
  uint64_t next_height = from_height == 0 ? 1 : from_height;
  ledger::Digest prev_digest = genesis_digest_;
  if (next_height > 1) {
    TRUSTMOE_ASSIGN_OR_RETURN(ledger::StoredBlock before, GetBlock(next_height - 1));
    prev_digest = before.digest;
  }
  bool stopped = false;
  Status last = Status::Unavailable("no validator endpoint answered");
  const size_t n = endpoints_.size();
  // Each pass that delivers at least one block earns a fresh set of rounds.
  int rounds_left = options_.rounds_max;
  while (rounds_left > 0 && !stopped) {
    --rounds_left;
    size_t start = preferred_.load();
    for (size_t i = 0; i < n && !stopped; ++i) {
      size_t index = (start + i) % n;
      Endpoint& endpoint = *endpoints_[index];
      uint64_t before = next_height;
      Status s;
      try {
        s = WatchFrom(endpoint, &next_height, &prev_digest, callback, &stopped);
      } catch (const std::exception& e) {
        s = Status::Internal(std::string("client error: ") + e.what());
      }
      if (stopped) return Status::Ok();
      last = s.WithContext("validator " + endpoint.address);
      if (FinalForReads(s)) return last;
      if (next_height > before) {
        preferred_.store(index);
        rounds_left = options_.rounds_max;
      }
    }
  }
  return stopped ? Status::Ok() : last;
}

// ---- Verdicts ----

// Where a verdict stream is: the block of the last verdict delivered and the results of that
// block already delivered (a resumed stream starts at that block again).
struct ChainClient::VerdictProgress {
  uint64_t height = 1;
  std::set<std::pair<crypto::PublicKey, uint64_t>> delivered_at_height;
  uint64_t delivered = 0;
  bool stopped = false;   // the callback said stop
  bool complete = false;  // the stream passed to_height
};

Status ChainClient::WatchVerdictsFrom(Endpoint& endpoint, const VerdictQuery& query,
                                      VerdictProgress* progress, const VerdictCallback& callback) {
  grpc::ClientContext ctx;  // no deadline: the stream lasts as long as the caller wants
  v1::WatchVerdictsRequest request;
  request.set_job(query.job);
  if (query.edge) request.set_edge(query.edge->bytes().data(), query.edge->bytes().size());
  request.set_from_height(progress->height);
  request.set_to_height(query.to_height);
  if (query.canceller != nullptr && !query.canceller->Attach([&ctx] { ctx.TryCancel(); })) {
    return Status::Cancelled("the verdict watch was cancelled");
  }
  struct Detach {
    WatchCanceller* c;
    ~Detach() {
      if (c != nullptr) c->Detach();
    }
  } detach{query.canceller};
  std::unique_ptr<grpc::ClientReader<v1::VerdictInfo>> reader =
      endpoint.stub->WatchVerdicts(&ctx, request);
  v1::VerdictInfo info;
  Status failure;
  while (reader->Read(&info)) {
    auto entry = VerdictFromInfo(genesis_, info);
    if (!entry.ok()) {
      failure = Status::DataLoss(entry.status().message());
      break;
    }
    const ledger::ResultRecord& r = entry->record;
    if ((!query.job.empty() && r.body.job != query.job) || (query.edge && r.edge != *query.edge)) {
      failure = Status::DataLoss("sent a verdict that does not match the query (job '" +
                                 r.body.job + "', edge " + r.edge.Hex() + ")");
      break;
    }
    if (r.verdict_height < progress->height ||
        (query.to_height != 0 && r.verdict_height > query.to_height)) {
      failure = Status::DataLoss(
          "sent a verdict of block " + std::to_string(r.verdict_height) + " after block " +
          std::to_string(progress->height) +
          (query.to_height ? " (asked up to block " + std::to_string(query.to_height) + ")"
                           : std::string()));
      break;
    }
    if (r.verdict_height > progress->height) {
      progress->height = r.verdict_height;
      progress->delivered_at_height.clear();
    }
    if (!progress->delivered_at_height.insert({r.edge, r.nonce}).second) continue;
    ++progress->delivered;
    if (!callback(*entry)) {
      progress->stopped = true;
      break;
    }
  }
  if (!failure.ok() || progress->stopped) {
    ctx.TryCancel();
    reader->Finish().ok();
    return failure;
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return net::FromGrpcStatus(status);
  if (query.to_height != 0) {
    progress->complete = true;
    return Status::Ok();
  }
  return Status::Unavailable("the verdict stream ended");
}

void WatchCanceller::Cancel() {
  std::lock_guard lock(mu_);
  cancelled_ = true;
  if (cancel_) cancel_();
}

bool WatchCanceller::cancelled() const {
  std::lock_guard lock(mu_);
  return cancelled_;
}

bool WatchCanceller::Attach(std::function<void()> cancel) {
  std::lock_guard lock(mu_);
  if (cancelled_) return false;
  cancel_ = std::move(cancel);
  return true;
}

void WatchCanceller::Detach() {
  std::lock_guard lock(mu_);
  cancel_ = nullptr;
}

Status ChainClient::WatchVerdicts(const VerdictQuery& query, const VerdictCallback& callback) {
  if (query.job.size() > ledger::kJobBytesMax) {
    return Status::InvalidArgument("a job name is at most " + std::to_string(ledger::kJobBytesMax) +
                                   " bytes, got " + std::to_string(query.job.size()));
  }
  VerdictProgress progress;
  progress.height = std::max<uint64_t>(query.from_height, 1);
  if (query.to_height != 0 && query.to_height < progress.height) {
    return Status::InvalidArgument("to_height " + std::to_string(query.to_height) +
                                   " is below from_height " + std::to_string(progress.height));
  }
  Status last = Status::Unavailable("no validator endpoint answered");
  const size_t n = endpoints_.size();
  // Each pass that delivers at least one verdict earns a fresh set of rounds.
  int rounds_left = options_.rounds_max;
  while (rounds_left > 0) {
    --rounds_left;
    size_t start = preferred_.load();
    for (size_t i = 0; i < n; ++i) {
      size_t index = (start + i) % n;
      Endpoint& endpoint = *endpoints_[index];
      uint64_t before = progress.delivered;
      Status s;
      try {
        s = WatchVerdictsFrom(endpoint, query, &progress, callback);
      } catch (const std::exception& e) {
        s = Status::Internal(std::string("client error: ") + e.what());
      }
      if (progress.stopped || progress.complete) return Status::Ok();
      if (query.canceller != nullptr && query.canceller->cancelled()) {
        return Status::Cancelled("the verdict watch was cancelled");
      }
      last = s.WithContext("validator " + endpoint.address);
      if (FinalForReads(s)) return last;
      if (progress.delivered > before) {
        preferred_.store(index);
        rounds_left = options_.rounds_max;
      }
    }
  }
  return last;
}

Result<std::vector<ResultEntry>> ChainClient::Results(const std::string& job, size_t results_max) {
  ReportedState state(this);
  return ReadJobResults(state, job, genesis_.validators.size(), results_max);
}

}  // namespace trustmoe::chain
