#include "chain/pbft/messages.h"

#include <algorithm>
#include <set>
#include <string>

#include "crypto/canonical.h"

namespace trustmoe::pbft {

namespace {

using crypto::CanonicalReader;
using crypto::CanonicalWriter;

constexpr std::string_view kEnvelopeDomain = "trustmoe/pbft/envelope/v1";
constexpr std::string_view kCertDomain = "trustmoe/pbft/commit-certificate/v1";
constexpr std::string_view kBlocksPayloadDomain = "trustmoe/pbft/attached-blocks/v1";
constexpr uint32_t kSignatureBytes = 64;

CanonicalWriter BodyWriter(MsgType type, uint32_t sender) {
  CanonicalWriter w(BodyDomain(type));
  w.U32(sender);
  return w;
}

// Positions a reader after the domain and sender of `e.body`.
Status OpenBody(const Envelope& e, MsgType expected, CanonicalReader* r) {
  if (e.type != expected) {
    return Status::InvalidArgument(std::string("expected a ") + std::string(MsgTypeName(expected)) +
                                   " message");
  }
  TRUSTMOE_RETURN_IF_ERROR(r->ExpectDomain(BodyDomain(expected)));
  TRUSTMOE_ASSIGN_OR_RETURN(uint32_t sender, r->U32());
  if (sender != e.sender) return Status::InvalidArgument("body sender differs from envelope");
  return Status::Ok();
}

Result<uint32_t> Count(CanonicalReader* r, uint64_t max, std::string_view what) {
  TRUSTMOE_ASSIGN_OR_RETURN(uint32_t count, r->U32());
  if (count > max) {
    return Status::InvalidArgument(std::string(what) + " count " + std::to_string(count) +
                                   " exceeds " + std::to_string(max));
  }
  return count;
}

uint32_t BlobMax(uint64_t limit) {
  return static_cast<uint32_t>(std::min<uint64_t>(limit, UINT32_MAX));
}

// An embedded (stripped) envelope of type `expected`.
Result<Envelope> ReadNested(CanonicalReader* r, const Limits& limits, MsgType expected) {
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes wire, r->Blob(BlobMax(limits.message_bytes_max)));
  TRUSTMOE_ASSIGN_OR_RETURN(Envelope e, DecodeEnvelope(wire, limits));
  if (e.type != expected) {
    return Status::InvalidArgument(std::string("embedded message is not a ") +
                                   std::string(MsgTypeName(expected)));
  }
  if (!e.payload.empty()) return Status::InvalidArgument("embedded message carries a payload");
  return e;
}

Result<std::vector<Envelope>> ReadNestedList(CanonicalReader* r, const Limits& limits,
                                             MsgType expected, uint64_t max) {
  TRUSTMOE_ASSIGN_OR_RETURN(uint32_t count, Count(r, max, MsgTypeName(expected)));
  std::vector<Envelope> out;
  for (uint32_t i = 0; i < count; ++i) {
    TRUSTMOE_ASSIGN_OR_RETURN(Envelope e, ReadNested(r, limits, expected));
    out.push_back(std::move(e));
  }
  return out;
}

void WriteNestedList(CanonicalWriter* w, const std::vector<Envelope>& list) {
  w->U32(static_cast<uint32_t>(list.size()));
  for (const Envelope& e : list) w->Blob(e.EncodeStripped());
}

void WriteCheckpointFields(CanonicalWriter* w, const Checkpoint& c) {
  w->U64(c.seq).Fixed(c.block_digest).Fixed(c.state_digest);
}

Result<Checkpoint> ReadCheckpointFields(CanonicalReader* r) {
  Checkpoint c;
  TRUSTMOE_ASSIGN_OR_RETURN(c.seq, r->U64());
  TRUSTMOE_ASSIGN_OR_RETURN(c.block_digest, r->Fixed());
  TRUSTMOE_ASSIGN_OR_RETURN(c.state_digest, r->Fixed());
  return c;
}

// view, seq, digest: the fields of pre-prepare, prepare and commit.
struct Vsd {
  uint64_t view = 0;
  uint64_t seq = 0;
  Digest digest{};
};

Result<Vsd> ParseVsd(const Envelope& e, MsgType type) {
  CanonicalReader r(e.body);
  TRUSTMOE_RETURN_IF_ERROR(OpenBody(e, type, &r));
  Vsd v;
  TRUSTMOE_ASSIGN_OR_RETURN(v.view, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(v.seq, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(v.digest, r.Fixed());
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return v;
}

Bytes VsdBody(MsgType type, uint32_t sender, uint64_t view, uint64_t seq, const Digest& d) {
  return BodyWriter(type, sender).U64(view).U64(seq).Fixed(d).Take();
}

}  // namespace

TxId ComputeTxId(ByteSpan tx) { return crypto::Sha256::Hash(tx); }

Digest NullBlockDigest(uint64_t seq) {
  return CanonicalWriter("trustmoe/pbft/null-block/v1").U64(seq).Hash();
}

std::string_view MsgTypeName(MsgType type) {
  switch (type) {
    case MsgType::kPrePrepare:
      return "pre-prepare";
    case MsgType::kPrepare:
      return "prepare";
    case MsgType::kCommit:
      return "commit";
    case MsgType::kCheckpoint:
      return "checkpoint";
    case MsgType::kViewChange:
      return "view-change";
    case MsgType::kNewView:
      return "new-view";
    case MsgType::kStatus:
      return "status";
    case MsgType::kRequest:
      return "request";
    case MsgType::kFetchBlocks:
      return "fetch-blocks";
    case MsgType::kBlocks:
      return "blocks";
  }
  return "unknown";
}

std::string_view BodyDomain(MsgType type) {
  switch (type) {
    case MsgType::kPrePrepare:
      return "trustmoe/pbft/pre-prepare/v1";
    case MsgType::kPrepare:
      return "trustmoe/pbft/prepare/v1";
    case MsgType::kCommit:
      return "trustmoe/pbft/commit/v1";
    case MsgType::kCheckpoint:
      return "trustmoe/pbft/checkpoint/v1";
    case MsgType::kViewChange:
      return "trustmoe/pbft/view-change/v1";
    case MsgType::kNewView:
      return "trustmoe/pbft/new-view/v1";
    case MsgType::kStatus:
      return "trustmoe/pbft/status/v1";
    case MsgType::kRequest:
      return "trustmoe/pbft/request/v1";
    case MsgType::kFetchBlocks:
      return "trustmoe/pbft/fetch-blocks/v1";
    case MsgType::kBlocks:
      return "trustmoe/pbft/blocks/v1";
  }
  return "trustmoe/pbft/unknown";
}

Bytes Envelope::Encode() const {
  CanonicalWriter w(kEnvelopeDomain);
  w.U8(static_cast<uint8_t>(type)).Blob(body).Blob(signature).Blob(payload);
  return w.Take();
}

Bytes Envelope::EncodeStripped() const {
  CanonicalWriter w(kEnvelopeDomain);
  w.U8(static_cast<uint8_t>(type)).Blob(body).Blob(signature).Blob(Bytes{});
  return w.Take();
}

Envelope Envelope::Stripped() const {
  Envelope e;
  e.type = type;
  e.sender = sender;
  e.body = body;
  e.signature = signature;
  return e;
}

Limits Limits::Of(const Config& config) {
  Limits l;
  l.n = config.n();
  l.message_bytes_max = config.message_bytes_max;
  l.block_bytes_max = config.BlockBytesMax();
  l.window = config.watermark_window;
  l.fetch_blocks_max = config.fetch_blocks_max;
  l.request_txs_max = config.request_txs_max;
  l.tx_bytes_max = config.tx_bytes_max;
  return l;
}

Result<Envelope> DecodeEnvelope(ByteSpan wire, const Limits& limits) {
  if (wire.size() > limits.message_bytes_max) {
    return Status::InvalidArgument("message of " + std::to_string(wire.size()) +
                                   " bytes exceeds the limit");
  }
  CanonicalReader r(wire);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kEnvelopeDomain));
  TRUSTMOE_ASSIGN_OR_RETURN(uint8_t type, r.U8());
  if (type == 0 || type > kMsgTypeMax) {
    return Status::InvalidArgument("unknown message type " + std::to_string(type));
  }
  Envelope e;
  e.type = static_cast<MsgType>(type);
  TRUSTMOE_ASSIGN_OR_RETURN(e.body, r.Blob(BlobMax(limits.message_bytes_max)));
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes sig, r.Blob(kSignatureBytes));
  if (sig.size() != kSignatureBytes) return Status::InvalidArgument("signature is not 64 bytes");
  std::copy(sig.begin(), sig.end(), e.signature.begin());
  TRUSTMOE_ASSIGN_OR_RETURN(e.payload, r.Blob(BlobMax(limits.message_bytes_max)));
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  CanonicalReader body(e.body);
  TRUSTMOE_RETURN_IF_ERROR(body.ExpectDomain(BodyDomain(e.type)));
  TRUSTMOE_ASSIGN_OR_RETURN(e.sender, body.U32());
  return e;
}

Envelope SignEnvelope(MsgType type, uint32_t sender, Bytes body, const crypto::PrivateKey& key,
                      Bytes payload) {
  Envelope e;
  e.type = type;
  e.sender = sender;
  e.signature = key.Sign(body);
  e.body = std::move(body);
  e.payload = std::move(payload);
  return e;
}

bool VerifyEnvelope(const Config& config, const Envelope& envelope) {
  if (envelope.sender >= config.n()) return false;
  return config.validators[envelope.sender].Verify(envelope.body, envelope.signature);
}

Bytes PrePrepare::Body(uint32_t sender) const {
  return VsdBody(MsgType::kPrePrepare, sender, view, seq, digest);
}
Result<PrePrepare> PrePrepare::Parse(const Envelope& e) {
  TRUSTMOE_ASSIGN_OR_RETURN(Vsd v, ParseVsd(e, MsgType::kPrePrepare));
  return PrePrepare{v.view, v.seq, v.digest};
}

Bytes Prepare::Body(uint32_t sender) const {
  return VsdBody(MsgType::kPrepare, sender, view, seq, digest);
}
Result<Prepare> Prepare::Parse(const Envelope& e) {
  TRUSTMOE_ASSIGN_OR_RETURN(Vsd v, ParseVsd(e, MsgType::kPrepare));
  return Prepare{v.view, v.seq, v.digest};
}

Bytes Commit::Body(uint32_t sender) const {
  return VsdBody(MsgType::kCommit, sender, view, seq, digest);
}
Result<Commit> Commit::Parse(const Envelope& e) {
  TRUSTMOE_ASSIGN_OR_RETURN(Vsd v, ParseVsd(e, MsgType::kCommit));
  return Commit{v.view, v.seq, v.digest};
}

Bytes Checkpoint::Body(uint32_t sender) const {
  CanonicalWriter w = BodyWriter(MsgType::kCheckpoint, sender);
  WriteCheckpointFields(&w, *this);
  return w.Take();
}
Result<Checkpoint> Checkpoint::Parse(const Envelope& e) {
  CanonicalReader r(e.body);
  TRUSTMOE_RETURN_IF_ERROR(OpenBody(e, MsgType::kCheckpoint, &r));
  TRUSTMOE_ASSIGN_OR_RETURN(Checkpoint c, ReadCheckpointFields(&r));
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return c;
}

Bytes EncodeAttachedBlocks(const std::vector<AttachedBlock>& blocks) {
  CanonicalWriter w(kBlocksPayloadDomain);
  w.U32(static_cast<uint32_t>(blocks.size()));
  for (const AttachedBlock& b : blocks) w.U64(b.seq).Blob(b.block);
  return w.Take();
}

Result<std::vector<AttachedBlock>> DecodeAttachedBlocks(ByteSpan payload, const Limits& limits) {
  std::vector<AttachedBlock> out;
  if (payload.empty()) return out;
  CanonicalReader r(payload);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kBlocksPayloadDomain));
  TRUSTMOE_ASSIGN_OR_RETURN(uint32_t count, Count(&r, limits.window, "attached block"));
  for (uint32_t i = 0; i < count; ++i) {
    AttachedBlock b;
    TRUSTMOE_ASSIGN_OR_RETURN(b.seq, r.U64());
    TRUSTMOE_ASSIGN_OR_RETURN(b.block, r.Blob(BlobMax(limits.block_bytes_max)));
    out.push_back(std::move(b));
  }
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return out;
}

Bytes ViewChange::Body(uint32_t sender) const {
  CanonicalWriter w = BodyWriter(MsgType::kViewChange, sender);
  w.U64(new_view);
  WriteCheckpointFields(&w, stable);
  WriteNestedList(&w, checkpoint_proof);
  w.U32(static_cast<uint32_t>(prepared.size()));
  for (const PreparedCert& c : prepared) {
    w.Blob(c.pre_prepare.EncodeStripped());
    WriteNestedList(&w, c.prepares);
  }
  return w.Take();
}

Result<ViewChange> ViewChange::Parse(const Envelope& e, const Limits& limits) {
  CanonicalReader r(e.body);
  TRUSTMOE_RETURN_IF_ERROR(OpenBody(e, MsgType::kViewChange, &r));
  ViewChange vc;
  TRUSTMOE_ASSIGN_OR_RETURN(vc.new_view, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(vc.stable, ReadCheckpointFields(&r));
  TRUSTMOE_ASSIGN_OR_RETURN(vc.checkpoint_proof,
                            ReadNestedList(&r, limits, MsgType::kCheckpoint, limits.n));
  TRUSTMOE_ASSIGN_OR_RETURN(uint32_t certs, Count(&r, limits.window, "prepared certificate"));
  for (uint32_t i = 0; i < certs; ++i) {
    PreparedCert c;
    TRUSTMOE_ASSIGN_OR_RETURN(c.pre_prepare, ReadNested(&r, limits, MsgType::kPrePrepare));
    TRUSTMOE_ASSIGN_OR_RETURN(c.prepares, ReadNestedList(&r, limits, MsgType::kPrepare, limits.n));
    vc.prepared.push_back(std::move(c));
  }
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return vc;
}

Bytes NewView::Body(uint32_t sender) const {
  CanonicalWriter w = BodyWriter(MsgType::kNewView, sender);
  w.U64(view);
  WriteNestedList(&w, view_changes);
  WriteNestedList(&w, pre_prepares);
  return w.Take();
}

Result<NewView> NewView::Parse(const Envelope& e, const Limits& limits) {
  CanonicalReader r(e.body);
  TRUSTMOE_RETURN_IF_ERROR(OpenBody(e, MsgType::kNewView, &r));
  NewView nv;
  TRUSTMOE_ASSIGN_OR_RETURN(nv.view, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(nv.view_changes,
                            ReadNestedList(&r, limits, MsgType::kViewChange, limits.n));
  TRUSTMOE_ASSIGN_OR_RETURN(nv.pre_prepares,
                            ReadNestedList(&r, limits, MsgType::kPrePrepare, limits.window));
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return nv;
}

Bytes StatusMsg::Body(uint32_t sender) const {
  return BodyWriter(MsgType::kStatus, sender)
      .U64(view)
      .Bool(view_active)
      .U64(last_executed)
      .U64(stable_seq)
      .Take();
}

Result<StatusMsg> StatusMsg::Parse(const Envelope& e) {
  CanonicalReader r(e.body);
  TRUSTMOE_RETURN_IF_ERROR(OpenBody(e, MsgType::kStatus, &r));
  StatusMsg s;
  TRUSTMOE_ASSIGN_OR_RETURN(s.view, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(s.view_active, r.Bool());
  TRUSTMOE_ASSIGN_OR_RETURN(s.last_executed, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(s.stable_seq, r.U64());
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return s;
}

Bytes Request::Body(uint32_t sender) const {
  CanonicalWriter w = BodyWriter(MsgType::kRequest, sender);
  w.U32(static_cast<uint32_t>(txs.size()));
  for (const Bytes& tx : txs) w.Blob(tx);
  return w.Take();
}

Result<Request> Request::Parse(const Envelope& e, const Limits& limits) {
  CanonicalReader r(e.body);
  TRUSTMOE_RETURN_IF_ERROR(OpenBody(e, MsgType::kRequest, &r));
  Request req;
  TRUSTMOE_ASSIGN_OR_RETURN(uint32_t count, Count(&r, limits.request_txs_max, "transaction"));
  for (uint32_t i = 0; i < count; ++i) {
    TRUSTMOE_ASSIGN_OR_RETURN(Bytes tx, r.Blob(limits.tx_bytes_max));
    req.txs.push_back(std::move(tx));
  }
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return req;
}

Bytes FetchBlocks::Body(uint32_t sender) const {
  return BodyWriter(MsgType::kFetchBlocks, sender).U64(from_seq).U32(count_max).Take();
}

Result<FetchBlocks> FetchBlocks::Parse(const Envelope& e) {
  CanonicalReader r(e.body);
  TRUSTMOE_RETURN_IF_ERROR(OpenBody(e, MsgType::kFetchBlocks, &r));
  FetchBlocks f;
  TRUSTMOE_ASSIGN_OR_RETURN(f.from_seq, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(f.count_max, r.U32());
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return f;
}

Bytes CommitCertificate::Encode() const {
  CanonicalWriter w(kCertDomain);
  w.U64(view).U64(seq).Fixed(digest).U32(static_cast<uint32_t>(signatures.size()));
  for (const auto& [id, sig] : signatures) w.U32(id).Blob(sig);
  return w.Take();
}

Result<CommitCertificate> CommitCertificate::Decode(ByteSpan bytes, uint32_t n) {
  CanonicalReader r(bytes);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kCertDomain));
  CommitCertificate c;
  TRUSTMOE_ASSIGN_OR_RETURN(c.view, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(c.seq, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(c.digest, r.Fixed());
  TRUSTMOE_ASSIGN_OR_RETURN(uint32_t count, Count(&r, n, "signature"));
  for (uint32_t i = 0; i < count; ++i) {
    TRUSTMOE_ASSIGN_OR_RETURN(uint32_t id, r.U32());
    TRUSTMOE_ASSIGN_OR_RETURN(Bytes sig, r.Blob(kSignatureBytes));
    if (sig.size() != kSignatureBytes) return Status::InvalidArgument("signature is not 64 bytes");
    Signature s{};
    std::copy(sig.begin(), sig.end(), s.begin());
    c.signatures.emplace_back(id, s);
  }
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return c;
}

Status VerifyCommitCertificate(const Config& config, const CommitCertificate& cert) {
  std::set<uint32_t> signers;
  for (const auto& [id, sig] : cert.signatures) {
    if (id >= config.n()) {
      return Status::Unauthenticated("commit certificate names unknown validator " +
                                     std::to_string(id));
    }
    if (!signers.insert(id).second) {
      return Status::Unauthenticated("commit certificate names validator " + std::to_string(id) +
                                     " twice");
    }
    Bytes body = Commit{cert.view, cert.seq, cert.digest}.Body(id);
    if (!config.validators[id].Verify(body, sig)) {
      return Status::Unauthenticated("commit certificate signature of validator " +
                                     std::to_string(id) + " does not verify");
    }
  }
  if (signers.size() < config.quorum()) {
    return Status::Unauthenticated("commit certificate has " + std::to_string(signers.size()) +
                                   " signatures, a quorum is " + std::to_string(config.quorum()));
  }
  return Status::Ok();
}

Bytes Blocks::Body(uint32_t sender) const {
  CanonicalWriter w = BodyWriter(MsgType::kBlocks, sender);
  WriteCheckpointFields(&w, stable);
  WriteNestedList(&w, checkpoint_proof);
  w.U32(static_cast<uint32_t>(entries.size()));
  for (const BlockEntry& b : entries) w.U64(b.seq).Blob(b.block).Blob(b.cert.Encode());
  return w.Take();
}

Result<Blocks> Blocks::Parse(const Envelope& e, const Limits& limits) {
  CanonicalReader r(e.body);
  TRUSTMOE_RETURN_IF_ERROR(OpenBody(e, MsgType::kBlocks, &r));
  Blocks b;
  TRUSTMOE_ASSIGN_OR_RETURN(b.stable, ReadCheckpointFields(&r));
  TRUSTMOE_ASSIGN_OR_RETURN(b.checkpoint_proof,
                            ReadNestedList(&r, limits, MsgType::kCheckpoint, limits.n));
  TRUSTMOE_ASSIGN_OR_RETURN(uint32_t count, Count(&r, limits.fetch_blocks_max, "block"));
  for (uint32_t i = 0; i < count; ++i) {
    BlockEntry entry;
    TRUSTMOE_ASSIGN_OR_RETURN(entry.seq, r.U64());
    TRUSTMOE_ASSIGN_OR_RETURN(entry.block, r.Blob(BlobMax(limits.block_bytes_max)));
    TRUSTMOE_ASSIGN_OR_RETURN(Bytes cert, r.Blob(BlobMax(limits.message_bytes_max)));
    TRUSTMOE_ASSIGN_OR_RETURN(entry.cert, CommitCertificate::Decode(cert, limits.n));
    b.entries.push_back(std::move(entry));
  }
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return b;
}

}  // namespace trustmoe::pbft
