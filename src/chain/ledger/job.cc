#include "chain/ledger/job.h"

#include <bit>
#include <cmath>
#include <cstdio>
#include <limits>
#include <set>
#include <utility>

#include "chain/ledger/result.h"
#include "common/check.h"
#include "crypto/canonical.h"
#include "crypto/sha256.h"

namespace trustmoe::ledger {
namespace {

using crypto::CanonicalReader;
using crypto::CanonicalWriter;

constexpr std::string_view kJobRecordDomain = "trustmoe/tx/job-record/v1";
constexpr std::string_view kJobStateDomain = "trustmoe/state/job/v1";
constexpr std::string_view kPlacementStateDomain = "trustmoe/state/placement/v1";
constexpr std::string_view kGateRequestDomain = "trustmoe/gate/request/v1";
constexpr std::string_view kJobIdDomain = "trustmoe/gate/job-id/v1";
constexpr std::string_view kSubmitMethod = "SubmitJob";
constexpr size_t kJobIdDigestBytes = 16;

std::string KeyPrefix(const crypto::PublicKey& key) { return key.Hex().substr(0, 16) + "..."; }

Result<JobEvent> ReadEvent(CanonicalReader* r) {
  TRUSTMOE_ASSIGN_OR_RETURN(uint8_t event, r->U8());
  if (event < static_cast<uint8_t>(JobEvent::kSubmitted) ||
      event > static_cast<uint8_t>(JobEvent::kFailed)) {
    return Status::InvalidArgument("job-record: unknown event " + std::to_string(event));
  }
  return static_cast<JobEvent>(event);
}

Result<double> ReadFiniteDouble(CanonicalReader* r, const char* what) {
  TRUSTMOE_ASSIGN_OR_RETURN(uint64_t bits, r->U64());
  const double v = std::bit_cast<double>(bits);
  if (!std::isfinite(v)) return Status::InvalidArgument(std::string(what) + " is not finite");
  return v;
}

void WriteMetrics(const JobMetrics& m, CanonicalWriter* w) {
  w->U64(m.step).U64(std::bit_cast<uint64_t>(m.loss)).U64(std::bit_cast<uint64_t>(m.accuracy));
  w->U64(m.verified).U64(m.rejected);
}

Result<JobMetrics> ReadMetrics(CanonicalReader* r) {
  JobMetrics m;
  TRUSTMOE_ASSIGN_OR_RETURN(m.step, r->U64());
  TRUSTMOE_ASSIGN_OR_RETURN(m.loss, ReadFiniteDouble(r, "job metrics: loss"));
  TRUSTMOE_ASSIGN_OR_RETURN(m.accuracy, ReadFiniteDouble(r, "job metrics: accuracy"));
  if (m.accuracy < 0 || m.accuracy > 1) {
    return Status::InvalidArgument("job metrics: accuracy " + std::to_string(m.accuracy) +
                                   " is outside [0, 1]");
  }
  TRUSTMOE_ASSIGN_OR_RETURN(m.verified, r->U64());
  TRUSTMOE_ASSIGN_OR_RETURN(m.rejected, r->U64());
  return m;
}

// A CID in canonical form; empty only where `empty_ok`.
Result<std::string> ReadCid(CanonicalReader* r, std::string_view what, bool empty_ok = false) {
  TRUSTMOE_ASSIGN_OR_RETURN(std::string cid, r->Str(kCidBytesMax));
  if (empty_ok && cid.empty()) return cid;
  TRUSTMOE_RETURN_IF_ERROR(CheckCidSyntax(cid).WithContext(what));
  return cid;
}

void WriteEdges(const std::vector<crypto::PublicKey>& edges, CanonicalWriter* w) {
  w->U32(static_cast<uint32_t>(edges.size()));
  for (const crypto::PublicKey& e : edges) w->Blob(e.bytes());
}

// u32 count (1..kPlacementEdgesMax), then that many distinct 32-byte keys.
Result<std::vector<crypto::PublicKey>> ReadEdges(CanonicalReader* r, uint32_t index) {
  TRUSTMOE_ASSIGN_OR_RETURN(uint32_t count, r->U32());
  if (count == 0 || count > kPlacementEdgesMax) {
    return Status::InvalidArgument("placement index " + std::to_string(index) + ": 1.." +
                                   std::to_string(kPlacementEdgesMax) + " edges, got " +
                                   std::to_string(count));
  }
  std::vector<crypto::PublicKey> edges;
  edges.reserve(count);
  std::set<crypto::PublicKey> seen;
  for (uint32_t i = 0; i < count; ++i) {
    TRUSTMOE_ASSIGN_OR_RETURN(crypto::PublicKey edge, ReadPublicKey(r));
    if (!seen.insert(edge).second) {
      return Status::InvalidArgument("placement index " + std::to_string(index) + ": edge " +
                                     KeyPrefix(edge) + " twice");
    }
    edges.push_back(edge);
  }
  return edges;
}

Result<PlacementEntry> ReadPlacementEntry(CanonicalReader* r) {
  PlacementEntry entry;
  TRUSTMOE_ASSIGN_OR_RETURN(entry.index, r->U32());
  if (entry.index >= kPlacementEntriesMax) {
    return Status::InvalidArgument("placement index " + std::to_string(entry.index) +
                                   " is not below " + std::to_string(kPlacementEntriesMax));
  }
  TRUSTMOE_ASSIGN_OR_RETURN(entry.expert_cid,
                            ReadCid(r, "placement index " + std::to_string(entry.index)));
  TRUSTMOE_ASSIGN_OR_RETURN(entry.edges, ReadEdges(r, entry.index));
  return entry;
}

Result<std::vector<PlacementEntry>> ReadPlacement(CanonicalReader* r) {
  TRUSTMOE_ASSIGN_OR_RETURN(uint32_t count, r->U32());
  if (count == 0 || count > kPlacementEntriesMax) {
    return Status::InvalidArgument("placement: 1.." + std::to_string(kPlacementEntriesMax) +
                                   " entries, got " + std::to_string(count));
  }
  std::vector<PlacementEntry> out;
  std::set<uint32_t> indices;
  for (uint32_t i = 0; i < count; ++i) {
    TRUSTMOE_ASSIGN_OR_RETURN(PlacementEntry entry, ReadPlacementEntry(r));
    if (!indices.insert(entry.index).second) {
      return Status::InvalidArgument("placement index " + std::to_string(entry.index) + " twice");
    }
    out.push_back(std::move(entry));
  }
  return out;
}

// The fields after `event` in the body.
Status ReadEventFields(CanonicalReader* r, JobRecordBody* out) {
  switch (out->event) {
    case JobEvent::kSubmitted: {
      TRUSTMOE_ASSIGN_OR_RETURN(out->researcher, ReadPublicKey(r));
      TRUSTMOE_ASSIGN_OR_RETURN(out->request_nonce, r->U64());
      TRUSTMOE_ASSIGN_OR_RETURN(out->spec_toml, r->Str(kJobSpecBytesMax));
      TRUSTMOE_ASSIGN_OR_RETURN(out->signature, r->Blob(64));
      if (out->signature.size() != 64) {
        return Status::InvalidArgument("signature is " + std::to_string(out->signature.size()) +
                                       " bytes, not 64");
      }
      return Status::Ok();
    }
    case JobEvent::kPlacement: {
      TRUSTMOE_ASSIGN_OR_RETURN(out->placement, ReadPlacement(r));
      return Status::Ok();
    }
    case JobEvent::kCheckpoint:
    case JobEvent::kCompleted: {
      TRUSTMOE_ASSIGN_OR_RETURN(out->metrics, ReadMetrics(r));
      TRUSTMOE_ASSIGN_OR_RETURN(
          out->cid, ReadCid(r, out->event == JobEvent::kCheckpoint ? "state_cid" : "output_cid"));
      return Status::Ok();
    }
    case JobEvent::kCancelled:
    case JobEvent::kFailed: {
      TRUSTMOE_ASSIGN_OR_RETURN(out->detail, r->Str(kJobDetailBytesMax));
      if (out->detail.empty()) return Status::InvalidArgument("empty detail");
      return Status::Ok();
    }
  }
  return Status::InvalidArgument("unknown event");
}

Status PermissionDeniedIfBlacklisted(const StateOverlay& state, const crypto::PublicKey& key,
                                     std::string_view who) {
  TRUSTMOE_ASSIGN_OR_RETURN(Reputation rep, state.GetReputation(key));
  if (rep.blacklisted) {
    return Status::PermissionDenied(std::string(who) + " " + KeyPrefix(key) +
                                    " is blacklisted since block " +
                                    std::to_string(rep.blacklisted_height));
  }
  return Status::Ok();
}

// A registered node of `role`, not blacklisted; PermissionDenied otherwise.
Status CheckRole(const StateOverlay& state, const crypto::PublicKey& key, NodeRole role,
                 std::string_view who) {
  TRUSTMOE_ASSIGN_OR_RETURN(auto node, state.GetNode(key));
  if (!node.has_value() || node->role != role) {
    return Status::PermissionDenied(std::string(who) + " " + KeyPrefix(key) +
                                    " is not a registered " + std::string(NodeRoleName(role)));
  }
  return PermissionDeniedIfBlacklisted(state, key, who);
}

Result<std::optional<JobRecord>> LoadJob(const StateOverlay& state, std::string_view job) {
  TRUSTMOE_ASSIGN_OR_RETURN(auto bytes, state.Get(JobKey(job)));
  if (!bytes.has_value()) return std::optional<JobRecord>();
  auto record = JobRecord::Decode(*bytes);
  if (!record.ok()) return Status::DataLoss(JobKey(job) + ": " + record.status().message());
  return std::optional<JobRecord>(std::move(record).value());
}

Status ExecuteSubmitted(const TxContext& ctx, const Tx& tx, const JobRecordBody& body,
                        StateOverlay* state) {
  TRUSTMOE_ASSIGN_OR_RETURN(auto existing, state->Get(JobKey(body.job)));
  if (existing.has_value()) {
    return Status::AlreadyExists("job " + body.job + " is already recorded");
  }
  TRUSTMOE_RETURN_IF_ERROR(CheckRole(*state, body.researcher, NodeRole::kResearcher, "researcher"));
  const Bytes message = GateRequestMessage(ctx.genesis->chain_id, kSubmitMethod, body.request_nonce,
                                           AsBytes(body.spec_toml));
  if (!body.researcher.Verify(message, body.signature)) {
    return Status::Unauthenticated(
        "the researcher's signature of the request does not verify "
        "for researcher " +
        KeyPrefix(body.researcher) + " on chain '" + ctx.genesis->chain_id + "'");
  }
  const std::string expected = JobIdFor(body.researcher, body.request_nonce, body.spec_toml);
  if (body.job != expected) {
    return Status::InvalidArgument("job id " + body.job + " is not the id of the request (" +
                                   expected + ")");
  }
  JobRecord record;
  record.gate = tx.signer;
  record.researcher = body.researcher;
  record.request_nonce = body.request_nonce;
  record.spec_sha256 = crypto::Sha256::Hash(AsBytes(body.spec_toml));
  record.status = JobStatus::kRunning;
  record.submitted_height = ctx.height;
  record.updated_height = ctx.height;
  record.events = 1;
  state->Put(JobKey(body.job), record.Encode());
  return Status::Ok();
}

// Every expert published; every edge a registered edge, not blacklisted.
Status CheckPlacement(const std::vector<PlacementEntry>& placement, const StateOverlay& state) {
  for (const PlacementEntry& entry : placement) {
    TRUSTMOE_ASSIGN_OR_RETURN(auto expert, state.Get(ExpertKey(entry.expert_cid)));
    if (!expert.has_value()) {
      return Status::NotFound("placement index " + std::to_string(entry.index) + ": expert " +
                              entry.expert_cid + " is not published");
    }
    for (const crypto::PublicKey& edge : entry.edges) {
      TRUSTMOE_ASSIGN_OR_RETURN(auto node, state.GetNode(edge));
      if (!node.has_value() || node->role != NodeRole::kEdge) {
        return Status::NotFound("placement index " + std::to_string(entry.index) + ": " +
                                KeyPrefix(edge) + " is not a registered edge");
      }
      TRUSTMOE_ASSIGN_OR_RETURN(Reputation rep, state.GetReputation(edge));
      if (rep.blacklisted) {
        return Status::FailedPrecondition(
            "placement index " + std::to_string(entry.index) + ": edge " + KeyPrefix(edge) +
            " is blacklisted since block " + std::to_string(rep.blacklisted_height));
      }
    }
  }
  return Status::Ok();
}

// An event after the submission, on `record` (the signer's running job).
Status ApplyEvent(const TxContext& ctx, const JobRecordBody& body, JobRecord* record,
                  StateOverlay* state) {
  TRUSTMOE_CHECK(body.event != JobEvent::kSubmitted);  // ExecuteSubmitted handles it
  switch (body.event) {
    case JobEvent::kSubmitted:
      break;
    case JobEvent::kPlacement:
      TRUSTMOE_RETURN_IF_ERROR(CheckPlacement(body.placement, *state));
      for (const PlacementEntry& entry : body.placement) {
        state->Put(PlacementKey(body.job, entry.index),
                   PlacementRecord{entry, ctx.height}.Encode());
      }
      return Status::Ok();
    case JobEvent::kCheckpoint:
      if (body.metrics.step <= record->metrics.step) {
        return Status::InvalidArgument("checkpoint step " + std::to_string(body.metrics.step) +
                                       " is not after the last recorded step " +
                                       std::to_string(record->metrics.step));
      }
      record->metrics = body.metrics;
      record->checkpoint_cid = body.cid;
      return Status::Ok();
    case JobEvent::kCompleted:
      record->status = JobStatus::kCompleted;
      record->metrics = body.metrics;
      record->output_cid = body.cid;
      return Status::Ok();
    case JobEvent::kCancelled:
    case JobEvent::kFailed:
      record->status =
          body.event == JobEvent::kCancelled ? JobStatus::kCancelled : JobStatus::kFailed;
      record->detail = body.detail;
      return Status::Ok();
  }
  return Status::Ok();
}

Status ExecuteEvent(const TxContext& ctx, const Tx& tx, const JobRecordBody& body,
                    StateOverlay* state) {
  TRUSTMOE_ASSIGN_OR_RETURN(std::optional<JobRecord> record, LoadJob(*state, body.job));
  if (!record.has_value()) return Status::NotFound("no job " + body.job + " on the ledger");
  if (record->gate != tx.signer) {
    return Status::PermissionDenied("job " + body.job + " belongs to gate " +
                                    KeyPrefix(record->gate) + ", not to " + KeyPrefix(tx.signer));
  }
  if (record->status != JobStatus::kRunning) {
    return Status::FailedPrecondition("job " + body.job + " has ended (" +
                                      std::string(JobStatusName(record->status)) + ")");
  }
  if (record->events == std::numeric_limits<uint32_t>::max()) {
    return Status::ResourceExhausted("job " + body.job + " has recorded the most events");
  }
  TRUSTMOE_RETURN_IF_ERROR(ApplyEvent(ctx, body, &*record, state));
  ++record->events;
  record->updated_height = ctx.height;
  state->Put(JobKey(body.job), record->Encode());
  return Status::Ok();
}

class JobRecordHandler : public TxHandler {
 public:
  std::string_view name() const override { return "job-record"; }
  Status Execute(const TxContext& ctx, const Tx& tx, StateOverlay* state) const override {
    TRUSTMOE_RETURN_IF_ERROR(CheckRole(*state, tx.signer, NodeRole::kGate, "signer"));
    TRUSTMOE_ASSIGN_OR_RETURN(JobRecordBody body, JobRecordBody::Decode(tx.body));
    if (body.event == JobEvent::kSubmitted) return ExecuteSubmitted(ctx, tx, body, state);
    return ExecuteEvent(ctx, tx, body, state);
  }
};

std::string IndexHex(uint32_t index) {
  char buf[9];
  std::snprintf(buf, sizeof(buf), "%08x", index);
  return buf;
}

// The index a placement key ends with: exactly 8 lowercase hex digits.
std::optional<uint32_t> ParseIndexHex(std::string_view hex) {
  if (hex.size() != 8) return std::nullopt;
  uint32_t v = 0;
  for (char c : hex) {
    uint32_t d;
    if (c >= '0' && c <= '9') {
      d = static_cast<uint32_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      d = static_cast<uint32_t>(c - 'a' + 10);
    } else {
      return std::nullopt;
    }
    v = v * 16 + d;
  }
  return v;
}

}  // namespace

Status CheckJobId(std::string_view job) {
  if (job.empty() || job.size() > kJobBytesMax) {
    return Status::InvalidArgument("a job id is 1.." + std::to_string(kJobBytesMax) +
                                   " lowercase hex digits, got " + std::to_string(job.size()) +
                                   " bytes");
  }
  for (char c : job) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return Status::InvalidArgument("job id " + QuoteForMessage(job) + " is not lowercase hex");
    }
  }
  return Status::Ok();
}

Bytes GateRequestMessage(std::string_view chain_id, std::string_view method, uint64_t nonce,
                         ByteSpan payload) {
  CanonicalWriter w(kGateRequestDomain);
  w.Str(chain_id).Str(method).U64(nonce).Blob(payload);
  return w.Take();
}

std::string JobIdFor(const crypto::PublicKey& researcher, uint64_t nonce,
                     std::string_view spec_toml) {
  CanonicalWriter w(kJobIdDomain);
  w.Blob(researcher.bytes()).U64(nonce).Str(spec_toml);
  const crypto::Digest digest = w.Hash();
  return ToHex(ByteSpan(digest.data(), kJobIdDigestBytes));
}

std::string_view JobEventName(JobEvent event) {
  switch (event) {
    case JobEvent::kSubmitted:
      return "submitted";
    case JobEvent::kPlacement:
      return "placement";
    case JobEvent::kCheckpoint:
      return "checkpoint";
    case JobEvent::kCompleted:
      return "completed";
    case JobEvent::kCancelled:
      return "cancelled";
    case JobEvent::kFailed:
      return "failed";
  }
  return "unknown";
}

std::string_view JobStatusName(JobStatus status) {
  switch (status) {
    case JobStatus::kRunning:
      return "running";
    case JobStatus::kCompleted:
      return "completed";
    case JobStatus::kCancelled:
      return "cancelled";
    case JobStatus::kFailed:
      return "failed";
  }
  return "unknown";
}

Bytes JobRecordBody::Encode() const {
  CanonicalWriter w(kJobRecordDomain);
  w.Str(job).U8(static_cast<uint8_t>(event));
  switch (event) {
    case JobEvent::kSubmitted:
      w.Blob(researcher.bytes()).U64(request_nonce).Str(spec_toml).Blob(signature);
      break;
    case JobEvent::kPlacement:
      w.U32(static_cast<uint32_t>(placement.size()));
      for (const PlacementEntry& entry : placement) {
        w.U32(entry.index).Str(entry.expert_cid);
        WriteEdges(entry.edges, &w);
      }
      break;
    case JobEvent::kCheckpoint:
    case JobEvent::kCompleted:
      WriteMetrics(metrics, &w);
      w.Str(cid);
      break;
    case JobEvent::kCancelled:
    case JobEvent::kFailed:
      w.Str(detail);
      break;
  }
  return w.Take();
}

Result<JobRecordBody> JobRecordBody::Decode(ByteSpan body) {
  CanonicalReader r(body);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kJobRecordDomain).WithContext("job-record"));
  JobRecordBody out;
  TRUSTMOE_ASSIGN_OR_RETURN(out.job, r.Str(kJobBytesMax));
  TRUSTMOE_RETURN_IF_ERROR(CheckJobId(out.job).WithContext("job-record"));
  TRUSTMOE_ASSIGN_OR_RETURN(out.event, ReadEvent(&r));
  TRUSTMOE_RETURN_IF_ERROR(
      ReadEventFields(&r, &out).WithContext("job-record " + std::string(JobEventName(out.event))));
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd().WithContext("job-record"));
  return out;
}

Bytes JobRecord::Encode() const {
  CanonicalWriter w(kJobStateDomain);
  w.Blob(gate.bytes()).Blob(researcher.bytes()).U64(request_nonce).Fixed(spec_sha256);
  w.U8(static_cast<uint8_t>(status)).U64(submitted_height).U64(updated_height).U32(events);
  WriteMetrics(metrics, &w);
  w.Str(checkpoint_cid).Str(output_cid).Str(detail);
  return w.Take();
}

Result<JobRecord> JobRecord::Decode(ByteSpan bytes) {
  CanonicalReader r(bytes);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kJobStateDomain));
  JobRecord out;
  TRUSTMOE_ASSIGN_OR_RETURN(out.gate, ReadPublicKey(&r));
  TRUSTMOE_ASSIGN_OR_RETURN(out.researcher, ReadPublicKey(&r));
  TRUSTMOE_ASSIGN_OR_RETURN(out.request_nonce, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(out.spec_sha256, r.Fixed());
  TRUSTMOE_ASSIGN_OR_RETURN(uint8_t status, r.U8());
  if (status < static_cast<uint8_t>(JobStatus::kRunning) ||
      status > static_cast<uint8_t>(JobStatus::kFailed)) {
    return Status::InvalidArgument("job record: unknown status " + std::to_string(status));
  }
  out.status = static_cast<JobStatus>(status);
  TRUSTMOE_ASSIGN_OR_RETURN(out.submitted_height, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(out.updated_height, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(out.events, r.U32());
  TRUSTMOE_ASSIGN_OR_RETURN(out.metrics, ReadMetrics(&r));
  TRUSTMOE_ASSIGN_OR_RETURN(out.checkpoint_cid, ReadCid(&r, "job record checkpoint", true));
  TRUSTMOE_ASSIGN_OR_RETURN(out.output_cid, ReadCid(&r, "job record output", true));
  TRUSTMOE_ASSIGN_OR_RETURN(out.detail, r.Str(kJobDetailBytesMax));
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return out;
}

Bytes PlacementRecord::Encode() const {
  CanonicalWriter w(kPlacementStateDomain);
  w.Str(entry.expert_cid);
  WriteEdges(entry.edges, &w);
  w.U64(height);
  return w.Take();
}

Result<PlacementRecord> PlacementRecord::Decode(ByteSpan bytes, uint32_t index) {
  CanonicalReader r(bytes);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kPlacementStateDomain));
  PlacementRecord out;
  out.entry.index = index;
  TRUSTMOE_ASSIGN_OR_RETURN(out.entry.expert_cid, ReadCid(&r, "placement record"));
  TRUSTMOE_ASSIGN_OR_RETURN(out.entry.edges, ReadEdges(&r, index));
  TRUSTMOE_ASSIGN_OR_RETURN(out.height, r.U64());
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return out;
}

Result<std::optional<JobState>> ReadJobState(const StateReader& state, std::string_view job) {
  TRUSTMOE_RETURN_IF_ERROR(CheckJobId(job));
  TRUSTMOE_ASSIGN_OR_RETURN(auto bytes, state.Get(JobKey(job)));
  if (!bytes.has_value()) return std::optional<JobState>();
  JobState out;
  auto record = JobRecord::Decode(*bytes);
  if (!record.ok()) return Status::DataLoss(JobKey(job) + ": " + record.status().message());
  out.record = std::move(record).value();
  const std::string prefix = PlacementPrefix(job);
  std::string after;
  while (true) {
    TRUSTMOE_ASSIGN_OR_RETURN(auto page, state.Scan(prefix, after, kPlacementEntriesMax));
    // A validator may cap pages below the limit: only an empty page ends the listing.
    if (page.empty()) break;
    for (const auto& [key, value] : page) {
      if (key <= after || !key.starts_with(prefix)) {
        return Status::DataLoss("the placement listing of job " + std::string(job) +
                                " does not advance within its prefix");
      }
      after = key;
      const std::optional<uint32_t> index =
          ParseIndexHex(std::string_view(key).substr(prefix.size()));
      if (!index.has_value() || *index >= kPlacementEntriesMax) {
        return Status::DataLoss("placement key " + QuoteForMessage(key, 200) + " is malformed");
      }
      if (out.placement.size() >= kPlacementEntriesMax) {
        return Status::DataLoss("job " + std::string(job) + " has more than " +
                                std::to_string(kPlacementEntriesMax) + " placement entries");
      }
      auto entry = PlacementRecord::Decode(value, *index);
      if (!entry.ok()) return Status::DataLoss(key + ": " + entry.status().message());
      out.placement.push_back(std::move(entry).value());
    }
  }
  return std::optional<JobState>(std::move(out));
}

std::string JobKey(std::string_view job) { return "job/" + std::string(job); }

std::string PlacementPrefix(std::string_view job) { return "placement/" + std::string(job) + "/"; }

std::string PlacementKey(std::string_view job, uint32_t index) {
  return PlacementPrefix(job) + IndexHex(index);
}

std::shared_ptr<const TxHandler> MakeJobRecordHandler() {
  return std::make_shared<JobRecordHandler>();
}

}  // namespace trustmoe::ledger
