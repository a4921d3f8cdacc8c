// Expert results on the ledger (docs/formats/expert-result.md).
//
// An edge commits each expert call as an ExpertResult transaction that it signs itself: the
// transaction envelope carries the edge's key (edge id), the nonce and the signature over the
// chain id and the body, so the signed transaction IS the commitment the edge hands the gate.
// The chain records it as PENDING under result/<edge key hex>/<nonce hex>; the validators'
// verdicts (ACCEPTED / REJECTED) come later.
#pragma once

#include <cstdint>
#include <string>

#include "chain/ledger/state.h"
#include "chain/ledger/tx.h"
#include "common/bytes.h"
#include "common/status.h"
#include "crypto/canonical.h"

namespace trustmoe::ledger {

inline constexpr uint32_t kJobBytesMax = 128;

enum class CallKind : uint8_t { kForward = 1, kBackward = 2 };
std::string_view CallKindName(CallKind kind);  // "forward", "backward"

// The arithmetic the edge declares it used; it picks the verification tolerance
// (ChainParams::tolerance_*_ppm).
enum class ComputeDType : uint8_t { kF32 = 1, kBF16 = 2, kF16 = 3 };
std::string_view ComputeDTypeName(ComputeDType dtype);  // "f32", "bf16", "f16"
Result<ComputeDType> ParseComputeDType(std::string_view name);
inline constexpr uint32_t kDeviceBytesMax = 32;

// canonical("trustmoe/tx/expert-result/v1", u8 kind, str job, u64 step, str expert_cid,
//           str input_cid, str grad_output_cid, str output_cid, u64 rows, u8 dtype,
//           str device)
// The CIDs name the exact activations files (docs/formats/expert.md) that the edge uploads to
// the store: input x, for backward the output gradient, and the edge's output (y, or for
// backward grad_input). grad_output_cid is empty for forward calls.
struct ExpertResultBody {
  CallKind kind = CallKind::kForward;
  std::string job;
  uint64_t step = 0;
  std::string expert_cid;
  std::string input_cid;
  std::string grad_output_cid;
  std::string output_cid;
  uint64_t rows = 0;
  ComputeDType dtype = ComputeDType::kF32;  // the edge's compute dtype
  std::string device = "cpu";               // "cpu" or "cuda:N" (recorded for the audit)

  Bytes Encode() const;
  // InvalidArgument unless the kind is known, the job is 1..kJobBytesMax bytes, every CID is
  // well-formed (grad_output_cid present exactly for backward), rows >= 1, the dtype is known
  // and the device is 1..kDeviceBytesMax bytes of [a-z0-9:].
  static Result<ExpertResultBody> Decode(ByteSpan body);
  bool operator==(const ExpertResultBody&) const = default;
};

enum class ResultStatus : uint8_t { kPending = 0, kAccepted = 1, kRejected = 2 };
std::string_view ResultStatusName(ResultStatus status);  // "pending", "accepted", "rejected"

// canonical("trustmoe/state/result/v1", bytes edge, u64 nonce, bytes body, u64 height,
//           u8 status, str reason, u64 verdict_height)
struct ResultRecord {
  crypto::PublicKey edge;
  uint64_t nonce = 0;
  ExpertResultBody body;
  uint64_t height = 0;  // the block that ordered it
  ResultStatus status = ResultStatus::kPending;
  std::string reason;  // why REJECTED
  uint64_t verdict_height = 0;  // the block whose votes made the verdict (0: pending)

  Bytes Encode() const;
  static Result<ResultRecord> Decode(ByteSpan bytes);
};

// The verdict fields every verified record (results, updates) ends with:
// u64 height, u8 status, str reason (<= 512), u64 verdict_height.
struct VerdictFields {
  uint64_t height = 0;
  ResultStatus status = ResultStatus::kPending;
  std::string reason;
  uint64_t verdict_height = 0;
};
void WriteVerdictFields(const VerdictFields& fields, crypto::CanonicalWriter* w);
// DataLoss on an unknown status.
Result<VerdictFields> ReadVerdictFields(crypto::CanonicalReader* r, std::string_view what);

// The dtype byte and device string of a commitment (`what` prefixes errors): InvalidArgument
// unless the dtype is known and the device is 1..kDeviceBytesMax bytes of [a-z0-9:].
Result<ComputeDType> ReadComputeDType(crypto::CanonicalReader* r, std::string_view what);
Status CheckDevice(std::string_view device, std::string_view what);

std::string ResultKey(const crypto::PublicKey& edge, uint64_t nonce);
// "pending/<edge hex>/<nonce hex>": present while the result awaits its verdict, so that a
// validator finds the results it still has to verify without scanning every result.
std::string PendingKey(const crypto::PublicKey& edge, uint64_t nonce);
// "job-result/<hex of the job name>/<edge hex>/<nonce hex>" (empty value): the results of one
// job, for `trustmoe ledger job`. JobResultPrefix(job) is the prefix of all of them.
std::string JobResultPrefix(std::string_view job);
std::string JobResultKey(std::string_view job, const crypto::PublicKey& edge, uint64_t nonce);

// The handler of TxType::kExpertResult: the signer must be a registered edge (the generic
// checks already refused a blacklisted signer or a used nonce); records the result PENDING.
std::shared_ptr<const TxHandler> MakeExpertResultHandler();

}  // namespace trustmoe::ledger
