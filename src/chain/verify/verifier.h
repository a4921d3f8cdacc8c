// One validator's check of one expert result (docs/verification.md): fetch the expert, the
// input (and output gradient) and the edge's output from the store, re-compute a sample of
// rows chosen by a seed the edge could not know, and compare them within the tolerance of the
// edge's compute dtype. The outcome is the validator's vote.
//
// A Verdict is only returned for what the edge is answerable for. When the fault may be this
// validator's or the store's (the store unreachable, the expert file missing — the edge ran
// it, so the store had it —, an internal error), Verify returns an error status instead and the
// caller tries again later: no vote is better than a wrong one.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

#include "chain/ledger/genesis.h"
#include "chain/ledger/result.h"
#include "chain/ledger/update.h"
#include "chain/ledger/verdict.h"
#include "common/bytes.h"
#include "common/clock.h"
#include "common/status.h"
#include "crypto/cid.h"
#include "edge/runtime.h"

namespace trustmoe::verify {

// Where a verifier reads blobs (the store client in a validator; a map in tests). Get returns
// the blob's bytes verified against `cid`; NotFound when the store answers that it does not
// hold it; FailedPrecondition when it is over `bytes_max` (as StoreClient::Get); any other
// error (unreachable, busy, slow, corrupt) is not held against the edge.
class BlobSource {
 public:
  virtual ~BlobSource() = default;
  virtual Result<Bytes> Get(const crypto::Cid& cid, uint64_t bytes_max) = 0;
  // When the store first received the blob (its clock, Unix ms); 0 when unknown (then no
  // lateness check is made).
  virtual Result<int64_t> CreatedUnixMs(const crypto::Cid& cid) {
    (void)cid;
    return int64_t{0};
  }
};

struct VerifierOptions {
  // Bytes of one activations file and of one expert file fetched for a check.
  uint64_t tensor_bytes_max = 256ull << 20;
  uint64_t expert_bytes_max = 4ull << 30;
  int64_t rows_max = 1 << 20;
  // Pause between fetch attempts of a missing result tensor while the deadline runs.
  int64_t fetch_retry_ms = 200;
  Clock* clock = nullptr;  // SystemClock when null
};

struct Outcome {
  ledger::Verdict verdict = ledger::Verdict::kAccepted;
  ledger::RejectReason reason = ledger::RejectReason::kNone;
  std::string detail;
  int64_t rows_checked = 0;
  double max_error = 0;  // largest row error seen among the sampled rows

  ledger::VoteBody Vote(const crypto::PublicKey& edge, uint64_t nonce) const;
};

// Whether the update (edge, nonce) ordered in `block_digest` is one whose step validators
// re-run: the first 8 bytes of SampleSeed as a little-endian u64, modulo 10^6, below
// `fraction_ppm`.
bool UpdateSelected(const crypto::Digest& block_digest, const crypto::PublicKey& edge,
                    uint64_t nonce, uint32_t fraction_ppm);

class ResultVerifier {
 public:
  // `runtime` runs the re-computation (the validator's: f32 on the CPU by default) and holds
  // the experts; `blobs` serves the store's bytes. Neither is owned.
  ResultVerifier(ledger::ChainParams params, edge::ExpertRuntime* runtime, BlobSource* blobs,
                 VerifierOptions options);

  // Checks `record`, ordered in the block with digest `block_digest` and time
  // `ordered_unix_ms`. The deadline for the result's tensors is anchored to the chain:
  // ordered_unix_ms + params.verify_deadline_ms. A tensor missing from the store is retried
  // until then, and one the store received after it counts as missing too. So every
  // validator reaches the same verdict whenever it checks, and an edge cannot split the
  // votes by uploading late. With ordered_unix_ms 0 (tests, benchmarks) the deadline runs
  // from the first attempt and lateness is not checked. Unavailable / Internal (retry later)
  // as said above.
  Result<Outcome> Verify(const ledger::ResultRecord& record, const crypto::Digest& block_digest,
                         int64_t ordered_unix_ms = 0);

  // Checks an expert update ordered in block `block_digest`; `sources` are the backward
  // results it names, read from the ledger by the caller, in its order. Always: the child (and
  // its optimizer state) are in the store, parse, and have the parent's architecture. For the
  // seeded fraction params.verify_update_fraction_ppm of updates (UpdateSelected): re-runs the
  // step on the CPU in f32 — the parent with its optimizer state, the weight gradients of every
  // row of every source summed, the optimizer — and compares, per tensor, the weight change
  // and the optimizer state within params.tolerance_update_ppm. Errors as Verify.
  Result<Outcome> VerifyUpdate(const ledger::UpdateRecord& record,
                               const crypto::Digest& block_digest,
                               const std::vector<ledger::ResultRecord>& sources,
                               int64_t ordered_unix_ms = 0);

 private:
  // The bytes of a result tensor, retried until `deadline_ms` (monotonic) while the store says
  // NotFound. Sets `rejected` when the edge is to blame (missing at the deadline, over the
  // limit); otherwise an error means no verdict yet.
  // `bytes_max` 0: options.tensor_bytes_max.
  Result<Bytes> FetchTensor(std::string_view what, const std::string& cid, int64_t deadline_ms,
                            Outcome* rejected, uint64_t bytes_max = 0,
                            int64_t late_after_unix_ms = 0);
  // The monotonic deadline for a record ordered at `ordered_unix_ms` (0: from now).
  int64_t DeadlineMs(int64_t ordered_unix_ms) const;
  Status EnsureExpert(const std::string& cid);

  ledger::ChainParams params_;
  std::mutex load_mu_;  // expert loads
  edge::ExpertRuntime* runtime_;
  BlobSource* blobs_;
  VerifierOptions options_;
  Clock* clock_;
};

}  // namespace trustmoe::verify
