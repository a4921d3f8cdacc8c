// Jobs on the ledger (docs/formats/tx.md type 19, docs/gate.md "Jobs on the chain").
//
// A gate records each job it runs with job-record transactions, one per event: submitted (with
// the researcher's signed request, so anyone can check who asked for what), placement (which
// edges hold which expert), checkpoints (step, metrics, the gate's checkpoint blob), and one
// final event (completed with the model manifest or predictions, cancelled, failed). The gate
// that records a job's submission owns it: only it may add events, so several gates can run
// without coordinating anything but the chain.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chain/ledger/state.h"
#include "chain/ledger/tx.h"
#include "common/bytes.h"
#include "common/status.h"
#include "crypto/ed25519.h"

namespace trustmoe::ledger {

inline constexpr uint32_t kJobSpecBytesMax = 16 * 1024;   // a spec's TOML text
inline constexpr uint32_t kPlacementEntriesMax = 256 * 16;  // experts x replication
inline constexpr uint32_t kJobDetailBytesMax = 256;
inline constexpr uint32_t kPlacementEdgesMax = 16;  // edges holding one expert

// The message a researcher signs for a gate request (proto/trustmoe/v1/gate.proto):
//   canonical("trustmoe/gate/request/v1", str chain_id, str method, u64 nonce, bytes payload)
Bytes GateRequestMessage(std::string_view chain_id, std::string_view method, uint64_t nonce,
                         ByteSpan payload);

// A job's id: the first 16 bytes, in lowercase hex (32 characters), of
//   SHA-256(canonical("trustmoe/gate/job-id/v1", bytes researcher, u64 nonce, str spec_toml))
// so a resubmission of one signed request names the same job.
std::string JobIdFor(const crypto::PublicKey& researcher, uint64_t nonce,
                     std::string_view spec_toml);

// InvalidArgument unless `job` is 1..kJobBytesMax (128) characters of [0-9a-f]: the ids a
// job-record names (JobIdFor's are 32).
Status CheckJobId(std::string_view job);

enum class JobEvent : uint8_t {
  kSubmitted = 1,
  kPlacement = 2,
  kCheckpoint = 3,
  kCompleted = 4,
  kCancelled = 5,
  kFailed = 6,
};
std::string_view JobEventName(JobEvent event);  // "submitted", ...

enum class JobStatus : uint8_t {
  kRunning = 1,    // submitted, not ended
  kCompleted = 2,
  kCancelled = 3,
  kFailed = 4,
};
std::string_view JobStatusName(JobStatus status);  // "running", "completed", ...

struct PlacementEntry {
  uint32_t index = 0;       // layer * experts + expert, below kPlacementEntriesMax
  std::string expert_cid;   // published
  std::vector<crypto::PublicKey> edges;  // 1..16 distinct registered edges, none blacklisted
  bool operator==(const PlacementEntry&) const = default;
};

// Metrics as IEEE-754 doubles on the wire (u64 bit patterns); finite, accuracies in [0, 1].
struct JobMetrics {
  uint64_t step = 0;
  double loss = 0;
  double accuracy = 0;  // training accuracy (checkpoint) or test accuracy (completed)
  uint64_t verified = 0;
  uint64_t rejected = 0;
  bool operator==(const JobMetrics&) const = default;
};

// canonical("trustmoe/tx/job-record/v1", str job (1..128 of [0-9a-f], the JobIdFor form or any
// lowercase hex), u8 event, then by event:
//   submitted:  bytes researcher (32), u64 request_nonce, str spec_toml (<= kJobSpecBytesMax),
//               bytes signature (64)
//   placement:  u32 count (1..kPlacementEntriesMax), then per entry: u32 index, str expert_cid,
//               u32 edge count (1..16), bytes edge (32) ...
//   checkpoint: metrics (u64 step, u64 loss bits, u64 accuracy bits, u64 verified,
//               u64 rejected), str state_cid (the gate's checkpoint blob)
//   completed:  metrics, str output_cid (training: model manifest; inference: predictions)
//   cancelled, failed: str detail (1..kJobDetailBytesMax)
// Decode is InvalidArgument for truncated or trailing bytes, an unknown event, a job id outside
// its charset or length, a key that is not 32 bytes or a signature not 64, a spec over
// kJobSpecBytesMax, a CID not in canonical form (CheckCidSyntax), a metric that is not finite
// or an accuracy outside [0, 1], a placement with 0 or more than kPlacementEntriesMax entries,
// an index at or above kPlacementEntriesMax or twice, or an entry with 0 or more than
// kPlacementEdgesMax edges or one edge twice. A job's placement therefore never holds more
// than kPlacementEntriesMax entries; a placement that does not fit in one transaction
// (tx_bytes_max) is recorded over several, each replacing only its own indices.
struct JobRecordBody {
  std::string job;
  JobEvent event = JobEvent::kSubmitted;
  // submitted
  crypto::PublicKey researcher{};
  uint64_t request_nonce = 0;
  std::string spec_toml;
  Bytes signature;
  // placement
  std::vector<PlacementEntry> placement;
  // checkpoint, completed
  JobMetrics metrics;
  std::string cid;  // checkpoint: state_cid; completed: output_cid
  // cancelled, failed
  std::string detail;

  Bytes Encode() const;
  static Result<JobRecordBody> Decode(ByteSpan body);
  bool operator==(const JobRecordBody&) const = default;
};

// job/<job> =
//   canonical("trustmoe/state/job/v1", bytes gate, bytes researcher, u64 request_nonce,
//             digest spec_sha256, u8 status, u64 submitted_height, u64 updated_height,
//             u32 events, metrics (last checkpoint or completion), str checkpoint_cid,
//             str output_cid, str detail)
struct JobRecord {
  crypto::PublicKey gate{};
  crypto::PublicKey researcher{};
  uint64_t request_nonce = 0;
  crypto::Digest spec_sha256{};
  JobStatus status = JobStatus::kRunning;
  uint64_t submitted_height = 0;
  uint64_t updated_height = 0;
  uint32_t events = 0;  // job-record transactions applied
  JobMetrics metrics;
  std::string checkpoint_cid;
  std::string output_cid;
  std::string detail;

  Bytes Encode() const;
  static Result<JobRecord> Decode(ByteSpan bytes);
  bool operator==(const JobRecord&) const = default;
};

// placement/<job>/<index as 8 hex digits> =
//   canonical("trustmoe/state/placement/v1", str expert_cid, u32 count, bytes edge..., u64 height)
struct PlacementRecord {
  PlacementEntry entry;
  uint64_t height = 0;
  Bytes Encode() const;
  static Result<PlacementRecord> Decode(ByteSpan bytes, uint32_t index);
  bool operator==(const PlacementRecord&) const = default;
};

// A job as the state holds it: its record and its placement entries in index order.
struct JobState {
  JobRecord record;
  std::vector<PlacementRecord> placement;
};

// Reads job/<job> and placement/<job>/ from `state` (a ledger opened offline, or validators
// through ScanState). nullopt when job/<job> is absent; InvalidArgument for a job id outside
// 1..128 of [0-9a-f]; DataLoss when a record does not decode, a placement key is malformed or
// out of order, or there are more than kPlacementEntriesMax placement entries.
Result<std::optional<JobState>> ReadJobState(const StateReader& state, std::string_view job);

std::string JobKey(std::string_view job);                       // job/<job>
std::string PlacementPrefix(std::string_view job);              // placement/<job>/
std::string PlacementKey(std::string_view job, uint32_t index);  // placement/<job>/<8 hex>

// The handler of TxType::kJobRecord. Signer: a registered gate, not blacklisted
// (PERMISSION_DENIED otherwise).
//   submitted:  job/<job> must not exist (ALREADY_EXISTS); the researcher is a registered,
//               not blacklisted researcher (PERMISSION_DENIED); the signature verifies over
//               GateRequestMessage(chain_id, "SubmitJob", request_nonce, spec_toml)
//               (UNAUTHENTICATED); job == JobIdFor(researcher, request_nonce, spec_toml)
//               (INVALID_ARGUMENT). Writes job/<job> (status running, gate = signer).
//   other events: job/<job> exists (NOT_FOUND), its gate is the signer (PERMISSION_DENIED),
//               it is running (FAILED_PRECONDITION).
//   placement:  every expert CID published, every edge a registered edge not blacklisted,
//               indices distinct (INVALID_ARGUMENT / NOT_FOUND / FAILED_PRECONDITION);
//               writes placement/<job>/<index>, replacing an earlier entry of that index.
//               Exactly: an expert not published, or a key that is not a registered edge,
//               NOT_FOUND; a blacklisted edge FAILED_PRECONDITION; an index twice (or any
//               malformed body) INVALID_ARGUMENT.
//   checkpoint: metrics.step greater than the last recorded step (INVALID_ARGUMENT).
//   completed, cancelled, failed: final status.
std::shared_ptr<const TxHandler> MakeJobRecordHandler();

}  // namespace trustmoe::ledger
