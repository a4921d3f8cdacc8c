#include "chain/ledger/tx.h"

#include <atomic>
#include <chrono>

#include "crypto/canonical.h"
#include "crypto/cid.h"

namespace trustmoe::ledger {

namespace {

using crypto::CanonicalReader;
using crypto::CanonicalWriter;

constexpr std::string_view kRegisterNodeDomain = "trustmoe/tx/register-node/v1";
constexpr std::string_view kPublishExpertDomain = "trustmoe/tx/publish-expert/v1";
constexpr std::string_view kPublishModelDomain = "trustmoe/tx/publish-model/v1";
constexpr uint32_t kArchBytesMax = 64;

}  // namespace

Result<crypto::PublicKey> ReadPublicKey(CanonicalReader* r) {
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes raw, r->Blob(32));
  return crypto::PublicKey::FromBytes(raw);
}

std::string_view TxTypeName(uint8_t type) {
  switch (static_cast<TxType>(type)) {
    case TxType::kRegisterNode: return "register-node";
    case TxType::kPublishExpert: return "publish-expert";
    case TxType::kPublishModel: return "publish-model";
    case TxType::kExpertResult: return "expert-result";
    case TxType::kVote: return "vote";
    case TxType::kExpertUpdated: return "expert-updated";
    case TxType::kJobRecord: return "job-record";
    case TxType::kLiftBlacklist: return "lift-blacklist";
    case TxType::kReportCommitment: return "report-commitment";
  }
  return "unknown";
}

Bytes Tx::Encode() const {
  CanonicalWriter w(kTxDomain);
  w.U8(type).Blob(signer.bytes()).U64(nonce).Blob(body).Blob(signature);
  return w.Take();
}

Result<Tx> Tx::Decode(ByteSpan bytes, uint32_t tx_bytes_max) {
  if (bytes.size() > tx_bytes_max) {
    return Status::InvalidArgument("transaction of " + std::to_string(bytes.size()) +
                                   " bytes is over the limit of " + std::to_string(tx_bytes_max));
  }
  CanonicalReader r(bytes);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kTxDomain).WithContext("transaction"));
  Tx tx;
  TRUSTMOE_ASSIGN_OR_RETURN(tx.type, r.U8());
  auto signer = ReadPublicKey(&r);
  if (!signer.ok()) return signer.status().WithContext("transaction signer");
  tx.signer = signer.value();
  TRUSTMOE_ASSIGN_OR_RETURN(tx.nonce, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(tx.body, r.Blob(tx_bytes_max));
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes sig, r.Blob(64));
  if (sig.size() != 64) return Status::InvalidArgument("transaction signature is not 64 bytes");
  std::copy(sig.begin(), sig.end(), tx.signature.begin());
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd().WithContext("transaction"));
  return tx;
}

Bytes Tx::SignedBytes(std::string_view chain_id) const {
  CanonicalWriter w(kTxSignDomain);
  w.Str(chain_id).U8(type).Blob(signer.bytes()).U64(nonce).Blob(body);
  return w.Take();
}

Status Tx::VerifySignature(std::string_view chain_id) const {
  if (!signer.Verify(SignedBytes(chain_id), signature)) {
    return Status::Unauthenticated("transaction signature does not verify for signer " +
                                   signer.Hex() + " on chain '" + std::string(chain_id) + "'");
  }
  return Status::Ok();
}

Tx MakeTx(std::string_view chain_id, TxType type, const crypto::PrivateKey& signer,
          uint64_t nonce, Bytes body) {
  Tx tx;
  tx.type = static_cast<uint8_t>(type);
  tx.signer = signer.public_key();
  tx.nonce = nonce;
  tx.body = std::move(body);
  tx.signature = signer.Sign(tx.SignedBytes(chain_id));
  return tx;
}

uint64_t FreshNonce() {
  static std::atomic<uint64_t> last{0};
  uint64_t now = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count());
  uint64_t prev = last.load();
  uint64_t next;
  do {
    next = std::max(now, prev + 1);
  } while (!last.compare_exchange_weak(prev, next));
  return next;
}

std::string_view NodeRoleName(NodeRole role) {
  switch (role) {
    case NodeRole::kEdge: return "edge";
    case NodeRole::kGate: return "gate";
    case NodeRole::kResearcher: return "researcher";
    case NodeRole::kValidator: return "validator";
    case NodeRole::kAuditor: return "auditor";
  }
  return "unknown";
}

Result<NodeRole> ParseNodeRole(std::string_view name) {
  for (uint8_t r = 1; r <= 5; ++r) {
    if (NodeRoleName(static_cast<NodeRole>(r)) == name) return static_cast<NodeRole>(r);
  }
  return Status::InvalidArgument("unknown role '" + std::string(name) +
                                 "' (edge, gate, researcher, validator, auditor)");
}

Bytes RegisterNode::Encode() const {
  CanonicalWriter w(kRegisterNodeDomain);
  w.Blob(key.bytes()).U8(static_cast<uint8_t>(role)).Str(name).Str(endpoint);
  return w.Take();
}

Result<RegisterNode> RegisterNode::Decode(ByteSpan body) {
  CanonicalReader r(body);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kRegisterNodeDomain));
  RegisterNode out;
  TRUSTMOE_ASSIGN_OR_RETURN(out.key, ReadPublicKey(&r));
  TRUSTMOE_ASSIGN_OR_RETURN(uint8_t role, r.U8());
  if (role < 1 || role > 5) {
    return Status::InvalidArgument("register-node: unknown role " + std::to_string(role));
  }
  out.role = static_cast<NodeRole>(role);
  TRUSTMOE_ASSIGN_OR_RETURN(out.name, r.Str(kNameBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.endpoint, r.Str(kEndpointBytesMax));
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  if (out.name.empty()) return Status::InvalidArgument("register-node: empty name");
  return out;
}

Bytes PublishExpert::Encode() const {
  CanonicalWriter w(kPublishExpertDomain);
  w.Str(cid).Str(name).Str(arch).U64(size);
  return w.Take();
}

Result<PublishExpert> PublishExpert::Decode(ByteSpan body) {
  CanonicalReader r(body);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kPublishExpertDomain));
  PublishExpert out;
  TRUSTMOE_ASSIGN_OR_RETURN(out.cid, r.Str(kCidBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.name, r.Str(kNameBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.arch, r.Str(kArchBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.size, r.U64());
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  TRUSTMOE_RETURN_IF_ERROR(CheckCidSyntax(out.cid).WithContext("publish-expert"));
  if (out.name.empty() || out.arch.empty()) {
    return Status::InvalidArgument("publish-expert: name and arch must not be empty");
  }
  return out;
}

Bytes PublishModel::Encode() const {
  CanonicalWriter w(kPublishModelDomain);
  w.Str(manifest_cid).Str(name);
  return w.Take();
}

Result<PublishModel> PublishModel::Decode(ByteSpan body) {
  CanonicalReader r(body);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kPublishModelDomain));
  PublishModel out;
  TRUSTMOE_ASSIGN_OR_RETURN(out.manifest_cid, r.Str(kCidBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.name, r.Str(kNameBytesMax));
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  TRUSTMOE_RETURN_IF_ERROR(CheckCidSyntax(out.manifest_cid).WithContext("publish-model"));
  if (out.name.empty()) return Status::InvalidArgument("publish-model: empty name");
  return out;
}

Status CheckCidSyntax(std::string_view cid) {
  auto parsed = crypto::Cid::Parse(cid);
  if (!parsed.ok() || parsed.value().ToString() != cid) {
    return Status::InvalidArgument("'" + std::string(cid.substr(0, 80)) +
                                   "' is not a CID (sha256-tree:<64 hex digits>)");
  }
  return Status::Ok();
}

}  // namespace trustmoe::ledger
