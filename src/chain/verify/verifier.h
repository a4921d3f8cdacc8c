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
#include <string>

#include "chain/ledger/genesis.h"
#include "chain/ledger/result.h"
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

class ResultVerifier {
 public:
  // `runtime` runs the re-computation (the validator's: f32 on the CPU by default) and holds
  // the experts; `blobs` serves the store's bytes. Neither is owned.
  ResultVerifier(ledger::ChainParams params, edge::ExpertRuntime* runtime, BlobSource* blobs,
                 VerifierOptions options);

  // Checks `record`, ordered in the block with digest `block_digest`. The result tensors are
  // retried until params.verify_deadline_ms has passed since the first attempt. Unavailable /
  // Internal (retry later) as said above.
  Result<Outcome> Verify(const ledger::ResultRecord& record, const crypto::Digest& block_digest);

 private:
  // The bytes of a result tensor, retried until `deadline_ms` (monotonic) while the store says
  // NotFound. Sets `rejected` when the edge is to blame (missing at the deadline, over the
  // limit); otherwise an error means no verdict yet.
  Result<Bytes> FetchTensor(std::string_view what, const std::string& cid, int64_t deadline_ms,
                            Outcome* rejected);
  Status EnsureExpert(const std::string& cid);

  ledger::ChainParams params_;
  edge::ExpertRuntime* runtime_;
  BlobSource* blobs_;
  VerifierOptions options_;
  Clock* clock_;
};

}  // namespace trustmoe::verify
