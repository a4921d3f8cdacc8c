// Client of the validators' ChainService (proto/trustmoe/v1/chain.proto) that trusts none of
// them: every block, transaction and inclusion proof it returns has been checked against the
// genesis file the caller holds (validator keys, chain id, limits). What cannot be checked
// against the genesis (the head a validator reports, registry listings) is marked as reported.
//
// Failover: calls go to the endpoints in order, starting with the last one that answered.
// A read moves to the next endpoint when one is unreachable, times out, or serves data that
// fails verification (a byzantine validator cannot stop an auditor); a submission moves on
// only when an endpoint is unreachable. Final answers (bad request, refused signature, not
// found) are returned at once.
//
// Thread-safe: one client may serve many threads. No gRPC type appears in this header.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "chain/ledger/genesis.h"
#include "chain/ledger/ledger_store.h"
#include "chain/ledger/result.h"
#include "chain/ledger/state.h"
#include "chain/ledger/verdict.h"
#include "common/bytes.h"
#include "common/status.h"
#include "net/transport.h"

namespace trustmoe::chain {

struct ChainClientOptions {
  std::vector<std::string> endpoints;  // "host:port"
  net::TransportConfig transport;
  int64_t rpc_timeout_ms = 30'000;  // reads
  // Submit with wait: how long the validator may take to commit (it answers
  // DEADLINE_EXCEEDED after that); the RPC deadline is this plus rpc_timeout_ms.
  uint32_t commit_timeout_ms = 30'000;
  int rounds_max = 2;  // passes over the endpoint list before giving up
};

// A transaction committed in a verified block, with everything needed to re-check it offline:
// tx.proof leads from the transaction's leaf to tx.header.tx_root, and tx.cert certifies
// tx.header.Hash() at tx.header.height under the genesis validator set.
struct VerifiedTx {
  ledger::TxId id{};
  ledger::TxWithProof tx;
};

struct SubmitResult {
  ledger::TxId id{};
  uint64_t height = 0;                  // 0 when submitted without waiting
  std::optional<VerifiedTx> committed;  // set when waited for
  std::string endpoint;                 // the validator that answered
};

// The head as one validator reports it. chain_id and genesis_digest are checked against the
// genesis; the rest is that validator's word until the block at `height` is fetched.
struct ReportedHead {
  uint64_t height = 0;
  ledger::Digest digest{};
  ledger::Digest state_root{};
  uint64_t view = 0;
  uint32_t validator_id = 0;
  std::string endpoint;
};

// A registry entry with its reputation, as reported by a validator.
struct NodeEntry {
  ledger::NodeRecord record;
  ledger::Reputation reputation;
};

// One page of ScanState: state entries as a validator reports them.
struct ScanPage {
  std::vector<std::pair<std::string, Bytes>> entries;
  uint64_t height = 0;  // the head the scan read
};

// Called with each verified block of WatchBlocks, in height order; return false to stop.
using BlockCallback = std::function<bool(const ledger::StoredBlock&)>;

// An expert result with its verdict (or PENDING) and every vote recorded on it, as a validator
// reports them: state entries are not proven against the genesis.
struct ResultEntry {
  ledger::ResultRecord record;
  std::vector<ledger::VoteRecord> votes;  // in validator id order
};

// Stops a watch from another thread: Cancel() cancels the stream in progress, and a watch that
// starts afterwards returns at once. The watch then returns Cancelled.
class WatchCanceller {
 public:
  void Cancel();
  bool cancelled() const;

 private:
  friend class ChainClient;
  // Registers the live call's cancel function; false when cancelled already.
  bool Attach(std::function<void()> cancel);
  void Detach();
  mutable std::mutex mu_;
  bool cancelled_ = false;
  std::function<void()> cancel_;
};

// Which verdicts WatchVerdicts streams.
struct VerdictQuery {
  std::string job;                        // empty: every job
  std::optional<crypto::PublicKey> edge;  // nullopt: every edge
  uint64_t from_height = 1;               // first block whose verdicts are wanted
  uint64_t to_height = 0;                 // last one; 0: follow new blocks without end
  WatchCanceller* canceller = nullptr;    // optional: stops the watch from another thread
};

// Called with each verdict of WatchVerdicts, in the order of the blocks that finalized them;
// return false to stop.
using VerdictCallback = std::function<bool(const ResultEntry&)>;

// Results returns at most this many results of one job.
inline constexpr size_t kJobResultsMax = 100'000;

class ChainClient {
 public:
  // InvalidArgument with no endpoints, a bad transport config, or a genesis that does not
  // validate.
  static Result<std::unique_ptr<ChainClient>> Create(ChainClientOptions options,
                                                     ledger::Genesis genesis);

  // Fetches the genesis a validator runs, checking only that the digest it sends matches the
  // JSON it sends. This trusts the validator: use it only where the user asked for that.
  static Result<ledger::Genesis> FetchGenesis(const ChainClientOptions& options);

  ~ChainClient();
  ChainClient(const ChainClient&) = delete;
  ChainClient& operator=(const ChainClient&) = delete;

  // Submits encoded transaction bytes. With `wait`, returns once committed, with the
  // inclusion proof verified. Errors are the validator's (InvalidArgument, Unauthenticated,
  // PermissionDenied, AlreadyExists, ResourceExhausted, DeadlineExceeded: it may still commit)
  // with the endpoint named; DataLoss when the returned proof does not verify. After a
  // failover, an AlreadyExists for this very transaction is answered with its proof. A
  // state-dependent refusal (PermissionDenied, FailedPrecondition, NotFound) is final only
  // after two more tries, 0.2 s and 0.4 s later: the validator that answered may lag a block.
  Result<SubmitResult> Submit(ByteSpan tx, bool wait = true);

  // FailedPrecondition when the validator runs another chain id or genesis.
  Result<ReportedHead> GetHead();

  // Block `height`, verified: it decodes within the genesis limits, is at that height, hashes
  // to the digest the certificate signs, matches its tx root (or is a null block with the
  // null-block digest), and the certificate is a quorum of genesis validators. NotFound above
  // the head (from every validator); DataLoss/Unauthenticated when no validator serves it
  // correctly.
  Result<ledger::StoredBlock> GetBlock(uint64_t height);

  // A committed transaction with its verified inclusion proof. NotFound when unknown.
  Result<VerifiedTx> GetTx(const ledger::TxId& id);

  // One page of the registry (reported, not verifiable against the genesis), in key order
  // after `start_after` (public key hex / cid; "" from the start); at most `limit` (1..1000).
  Result<std::vector<NodeEntry>> ListNodes(const std::string& start_after, uint32_t limit);
  Result<std::vector<ledger::ExpertRecord>> ListExperts(const std::string& start_after,
                                                        uint32_t limit);
  Result<std::vector<ledger::ModelRecord>> ListModels(const std::string& start_after,
                                                      uint32_t limit);

  // The genesis of the answering validator; FailedPrecondition when it differs from ours.
  Result<ledger::Genesis> GetGenesis();
  // Raw state under `prefix` (reported, not proven), at most `limit` (1..1000) entries.
  Result<ScanPage> ScanState(const std::string& prefix, const std::string& start_after,
                             uint32_t limit);
  // Whether state key `key` exists, as `agreeing` validators report alike (f + 1 of them
  // include an honest one, so no f byzantine validators decide it). Asks validators in turn;
  // Unavailable when too few answer alike.
  Result<bool> KeyPresentOnQuorum(const std::string& key, uint32_t agreeing);
  // The registry entry and reputation of `key` as a validator reports them; nullopt when the
  // key is not registered.
  Result<std::optional<NodeEntry>> GetNode(const crypto::PublicKey& key);

  // Streams verified blocks from `from_height` (at least 1) on, each linked to the one
  // before, and then each new block as it commits, until `callback` returns false (OK) or no
  // endpoint can continue the stream. A broken stream resumes on the next endpoint at the next
  // height. DataLoss when a block does not verify or does not link.
  Status WatchBlocks(uint64_t from_height, const BlockCallback& callback);

  // Streams the verdicts finalized in blocks query.from_height..query.to_height (or on without
  // end), as reported by a validator and checked for consistency: well-formed, final, with a
  // quorum of votes for the verdict (none for a result rejected as it was ordered, for an
  // unpublished expert), matching the query, in block order. A broken stream
  // resumes on the next endpoint at the block of the last verdict delivered, without
  // repeating one. OK when `callback` returns false or the stream passed to_height;
  // InvalidArgument for a bad query (job over ledger::kJobBytesMax bytes, to_height below
  // from_height); DataLoss when a validator sends an inconsistent verdict and no other
  // continues; Unavailable when no endpoint can continue the stream.
  Status WatchVerdicts(const VerdictQuery& query, const VerdictCallback& callback);

  // Every result of `job` (1..ledger::kJobBytesMax bytes) with its verdict and votes, in (edge,
  // nonce) order, read with ScanState (reported, not proven). ResourceExhausted when the job
  // has more than `results_max`; DataLoss when a reported record does not decode or does not
  // match its key.
  Result<std::vector<ResultEntry>> Results(const std::string& job,
                                           size_t results_max = kJobResultsMax);

  const ledger::Genesis& genesis() const { return genesis_; }
  const ledger::Digest& genesis_digest() const { return genesis_digest_; }

 private:
  struct Endpoint;
  ChainClient(ChainClientOptions options, ledger::Genesis genesis);
  enum class Retry { kUnavailableOnly, kReads };
  template <typename T>
  Result<T> WithFailover(Retry retry, const std::function<Result<T>(Endpoint&)>& call);
  Result<SubmitResult> SubmitTo(Endpoint& endpoint, ByteSpan tx, bool wait);
  Result<ScanPage> ScanStateOn(Endpoint& endpoint, const std::string& prefix,
                               const std::string& start_after, uint32_t limit);
  Status WatchFrom(Endpoint& endpoint, uint64_t* next_height, ledger::Digest* prev_digest,
                   const BlockCallback& callback, bool* stopped);
  struct VerdictProgress;
  Status WatchVerdictsFrom(Endpoint& endpoint, const VerdictQuery& query, VerdictProgress* progress,
                           const VerdictCallback& callback);

  ChainClientOptions options_;
  ledger::Genesis genesis_;
  ledger::Digest genesis_digest_;
  ledger::ValidatorSet validators_;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
  std::atomic<size_t> preferred_{0};
};

// ---- Offline checks, shared with the CLI and tests (no network). ----

// Checks a block as received: `block` (empty: null block), `cert` encodings and the digest the
// sender claims, at `height`, against the genesis. DataLoss or Unauthenticated naming the
// height and what failed.
Result<ledger::StoredBlock> VerifyBlockBytes(const ledger::Genesis& genesis, uint64_t height,
                                             ByteSpan block, ByteSpan cert,
                                             ByteSpan claimed_digest);

// Checks a transaction with its proof, header and certificate encodings (ledger::
// VerifyTxInclusion against the genesis validators) and that the header is at `height`.
// DataLoss / Unauthenticated saying what failed.
Result<VerifiedTx> VerifyTxBytes(const ledger::Genesis& genesis, ByteSpan tx, uint64_t height,
                                 ByteSpan proof, ByteSpan header, ByteSpan cert);

// Re-checks a VerifiedTx (e.g. one read from a file) against the genesis.
Status VerifyTx(const ledger::Genesis& genesis, const VerifiedTx& tx);

// The results of `job` read from `state` (a validator's ledger opened offline, or the
// validators through ScanState), with at most `validators` votes each: what
// ChainClient::Results returns. InvalidArgument for a bad job name; ResourceExhausted over
// `results_max`; DataLoss for records that do not decode or do not match their keys.
Result<std::vector<ResultEntry>> ReadJobResults(const ledger::StateReader& state,
                                                const std::string& job, size_t validators,
                                                size_t results_max = kJobResultsMax);

// A self-contained proof file (JSON, docs/auditor.md): chain id, genesis digest, tx id,
// height, and the tx, proof, header and certificate encodings as hex.
std::string TxProofFileJson(const ledger::Genesis& genesis, const VerifiedTx& tx);
// Parses and verifies a proof file against the genesis. InvalidArgument for malformed files;
// FailedPrecondition when it names another chain or genesis; DataLoss / Unauthenticated when
// the proof does not verify.
Result<VerifiedTx> ParseTxProofFile(const ledger::Genesis& genesis, std::string_view text);

}  // namespace trustmoe::chain
