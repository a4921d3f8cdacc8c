#include "chain/ledger/state.h"

#include "chain/ledger/job.h"
#include "chain/ledger/report.h"
#include "chain/ledger/result.h"
#include "chain/ledger/update.h"
#include "chain/ledger/verdict.h"

#include <cstdio>

#include "common/bytes.h"
#include "crypto/canonical.h"

namespace trustmoe::ledger {

namespace {

using crypto::CanonicalReader;
using crypto::CanonicalWriter;

constexpr std::string_view kNodeDomain = "trustmoe/state/node/v1";
constexpr std::string_view kReputationDomain = "trustmoe/state/reputation/v1";
constexpr std::string_view kExpertDomain = "trustmoe/state/expert/v1";
constexpr std::string_view kModelDomain = "trustmoe/state/model/v1";
constexpr uint32_t kArchBytesMax = 64;

template <typename T>
Result<T> Corrupt(const Status& s, std::string_view what) {
  return Status::DataLoss("stored " + std::string(what) + " is corrupt: " + s.message());
}

// Signer may publish experts and models: the admin, or a registered researcher or gate.
Status CheckPublisher(const TxContext& ctx, const Tx& tx, const StateOverlay& state,
                      std::string_view what) {
  if (tx.signer == ctx.genesis->admin_key) return Status::Ok();
  TRUSTMOE_ASSIGN_OR_RETURN(auto node, state.GetNode(tx.signer));
  if (!node.has_value()) {
    return Status::PermissionDenied(std::string(what) + ": signer " + tx.signer.Hex() +
                                    " is not a registered node");
  }
  if (node->role != NodeRole::kResearcher && node->role != NodeRole::kGate) {
    return Status::PermissionDenied(std::string(what) + ": a node with role " +
                                    std::string(NodeRoleName(node->role)) +
                                    " may not publish (researcher or gate only)");
  }
  return Status::Ok();
}

class RegisterNodeHandler : public TxHandler {
 public:
  std::string_view name() const override { return "register-node"; }
  Status Execute(const TxContext& ctx, const Tx& tx, StateOverlay* state) const override {
    if (tx.signer != ctx.genesis->admin_key) {
      return Status::PermissionDenied("register-node must be signed by the admin key");
    }
    TRUSTMOE_ASSIGN_OR_RETURN(RegisterNode body, RegisterNode::Decode(tx.body));
    if (body.role == NodeRole::kValidator || ctx.genesis->ValidatorId(body.key) >= 0) {
      return Status::PermissionDenied(
          "register-node: validators are fixed by the genesis file and cannot be registered");
    }
    TRUSTMOE_ASSIGN_OR_RETURN(auto existing, state->GetNode(body.key));
    NodeRecord record;
    record.key = body.key;
    record.role = body.role;
    record.name = body.name;
    record.endpoint = body.endpoint;
    record.registered_height = existing.has_value() ? existing->registered_height : ctx.height;
    state->Put(NodeKey(body.key), record.Encode());
    return Status::Ok();
  }
};

class PublishExpertHandler : public TxHandler {
 public:
  std::string_view name() const override { return "publish-expert"; }
  Status Execute(const TxContext& ctx, const Tx& tx, StateOverlay* state) const override {
    TRUSTMOE_RETURN_IF_ERROR(CheckPublisher(ctx, tx, *state, "publish-expert"));
    TRUSTMOE_ASSIGN_OR_RETURN(PublishExpert body, PublishExpert::Decode(tx.body));
    TRUSTMOE_ASSIGN_OR_RETURN(auto existing, state->Get(ExpertKey(body.cid)));
    if (existing.has_value()) {
      return Status::AlreadyExists("expert " + body.cid + " is already published");
    }
    ExpertRecord record{body.cid, body.name, body.arch, body.size, tx.signer, ctx.height};
    state->Put(ExpertKey(body.cid), record.Encode());
    return Status::Ok();
  }
};

class PublishModelHandler : public TxHandler {
 public:
  std::string_view name() const override { return "publish-model"; }
  Status Execute(const TxContext& ctx, const Tx& tx, StateOverlay* state) const override {
    TRUSTMOE_RETURN_IF_ERROR(CheckPublisher(ctx, tx, *state, "publish-model"));
    TRUSTMOE_ASSIGN_OR_RETURN(PublishModel body, PublishModel::Decode(tx.body));
    TRUSTMOE_ASSIGN_OR_RETURN(auto existing, state->Get(ModelKey(body.manifest_cid)));
    if (existing.has_value()) {
      return Status::AlreadyExists("model " + body.manifest_cid + " is already published");
    }
    ModelRecord record{body.manifest_cid, body.name, tx.signer, ctx.height};
    state->Put(ModelKey(body.manifest_cid), record.Encode());
    return Status::Ok();
  }
};

}  // namespace

std::string NodeKey(const crypto::PublicKey& key) { return "node/" + key.Hex(); }
std::string ReputationKey(const crypto::PublicKey& key) { return "rep/" + key.Hex(); }
std::string NonceKey(const crypto::PublicKey& key, uint64_t nonce) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(nonce));
  return "nonce/" + key.Hex() + "/" + buf;
}
std::string ExpertKey(std::string_view cid) { return "expert/" + std::string(cid); }
std::string ModelKey(std::string_view cid) { return "model/" + std::string(cid); }

Bytes NodeRecord::Encode() const {
  CanonicalWriter w(kNodeDomain);
  w.Blob(key.bytes()).U8(static_cast<uint8_t>(role)).Str(name).Str(endpoint);
  w.U64(registered_height);
  return w.Take();
}

Result<NodeRecord> NodeRecord::Decode(ByteSpan bytes) {
  CanonicalReader r(bytes);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kNodeDomain));
  NodeRecord out;
  TRUSTMOE_ASSIGN_OR_RETURN(out.key, ReadPublicKey(&r));
  TRUSTMOE_ASSIGN_OR_RETURN(uint8_t role, r.U8());
  if (role < 1 || role > 5) return Status::InvalidArgument("unknown role");
  out.role = static_cast<NodeRole>(role);
  TRUSTMOE_ASSIGN_OR_RETURN(out.name, r.Str(kNameBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.endpoint, r.Str(kEndpointBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.registered_height, r.U64());
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return out;
}

Bytes Reputation::Encode() const {
  CanonicalWriter w(kReputationDomain);
  w.U64(accepted).U64(rejected).U32(strikes).U32(faults).U64(contradictions);
  w.Bool(blacklisted).U64(blacklisted_height).Str(blacklist_reason);
  return w.Take();
}

Result<Reputation> Reputation::Decode(ByteSpan bytes) {
  CanonicalReader r(bytes);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kReputationDomain));
  Reputation out;
  TRUSTMOE_ASSIGN_OR_RETURN(out.accepted, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(out.rejected, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(out.strikes, r.U32());
  TRUSTMOE_ASSIGN_OR_RETURN(out.faults, r.U32());
  TRUSTMOE_ASSIGN_OR_RETURN(out.contradictions, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(out.blacklisted, r.Bool());
  TRUSTMOE_ASSIGN_OR_RETURN(out.blacklisted_height, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(out.blacklist_reason, r.Str(1024));
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return out;
}

Bytes ExpertRecord::Encode() const {
  CanonicalWriter w(kExpertDomain);
  w.Str(cid).Str(name).Str(arch).U64(size).Blob(publisher.bytes()).U64(height);
  return w.Take();
}

Result<ExpertRecord> ExpertRecord::Decode(ByteSpan bytes) {
  CanonicalReader r(bytes);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kExpertDomain));
  ExpertRecord out;
  TRUSTMOE_ASSIGN_OR_RETURN(out.cid, r.Str(kCidBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.name, r.Str(kNameBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.arch, r.Str(kArchBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.size, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(out.publisher, ReadPublicKey(&r));
  TRUSTMOE_ASSIGN_OR_RETURN(out.height, r.U64());
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return out;
}

Bytes ModelRecord::Encode() const {
  CanonicalWriter w(kModelDomain);
  w.Str(manifest_cid).Str(name).Blob(publisher.bytes()).U64(height);
  return w.Take();
}

Result<ModelRecord> ModelRecord::Decode(ByteSpan bytes) {
  CanonicalReader r(bytes);
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain(kModelDomain));
  ModelRecord out;
  TRUSTMOE_ASSIGN_OR_RETURN(out.manifest_cid, r.Str(kCidBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.name, r.Str(kNameBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(out.publisher, ReadPublicKey(&r));
  TRUSTMOE_ASSIGN_OR_RETURN(out.height, r.U64());
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return out;
}

Result<std::optional<Bytes>> StateOverlay::Get(const std::string& key) const {
  auto it = writes_.find(key);
  if (it != writes_.end()) return it->second;
  if (parent_ != nullptr) return parent_->Get(key);
  if (base_ != nullptr) return base_->Get(key);
  return std::optional<Bytes>();
}

void StateOverlay::MergeIntoParent() {
  if (parent_ == nullptr) return;
  for (auto& [key, value] : writes_) parent_->writes_[key] = std::move(value);
  writes_.clear();
}

Result<std::optional<NodeRecord>> StateOverlay::GetNode(const crypto::PublicKey& key) const {
  TRUSTMOE_ASSIGN_OR_RETURN(auto raw, Get(NodeKey(key)));
  if (!raw.has_value()) return std::optional<NodeRecord>();
  auto record = NodeRecord::Decode(*raw);
  if (!record.ok()) return Corrupt<std::optional<NodeRecord>>(record.status(), "node record");
  return std::optional<NodeRecord>(std::move(record).value());
}

Result<Reputation> StateOverlay::GetReputation(const crypto::PublicKey& key) const {
  TRUSTMOE_ASSIGN_OR_RETURN(auto raw, Get(ReputationKey(key)));
  if (!raw.has_value()) return Reputation{};
  auto rep = Reputation::Decode(*raw);
  if (!rep.ok()) return Corrupt<Reputation>(rep.status(), "reputation");
  return rep;
}

Digest ComputeStateRoot(const Digest& prev_root, uint64_t height,
                        const std::map<std::string, std::optional<Bytes>>& writes) {
  CanonicalWriter w(kStateRootDomain);
  w.Fixed(prev_root).U64(height).U32(static_cast<uint32_t>(writes.size()));
  for (const auto& [key, value] : writes) {
    w.Str(key).Bool(value.has_value());
    w.Blob(value.has_value() ? ByteSpan(*value) : ByteSpan());
  }
  return w.Hash();
}

TxRegistry TxRegistry::Default() {
  TxRegistry r;
  r.Register(static_cast<uint8_t>(TxType::kRegisterNode), std::make_shared<RegisterNodeHandler>());
  r.Register(static_cast<uint8_t>(TxType::kPublishExpert),
             std::make_shared<PublishExpertHandler>());
  r.Register(static_cast<uint8_t>(TxType::kPublishModel), std::make_shared<PublishModelHandler>());
  r.Register(static_cast<uint8_t>(TxType::kExpertResult), MakeExpertResultHandler());
  r.Register(static_cast<uint8_t>(TxType::kVote), MakeVoteHandler());
  r.Register(static_cast<uint8_t>(TxType::kExpertUpdated), MakeExpertUpdatedHandler());
  r.Register(static_cast<uint8_t>(TxType::kJobRecord), MakeJobRecordHandler());
  r.Register(static_cast<uint8_t>(TxType::kLiftBlacklist), MakeLiftBlacklistHandler());
  r.Register(static_cast<uint8_t>(TxType::kReportCommitment), MakeReportCommitmentHandler());
  return r;
}

void TxRegistry::Register(uint8_t type, std::shared_ptr<const TxHandler> handler) {
  handlers_[type] = std::move(handler);
}

const TxHandler* TxRegistry::Find(uint8_t type) const {
  auto it = handlers_.find(type);
  return it == handlers_.end() ? nullptr : it->second.get();
}

bool SignatureCache::Contains(const pbft::TxId& id) const {
  std::lock_guard lock(mu_);
  return set_.count(id) != 0;
}

void SignatureCache::Insert(const pbft::TxId& id) {
  std::lock_guard lock(mu_);
  if (!set_.insert(id).second) return;
  order_.push_back(id);
  while (order_.size() > capacity_) {
    set_.erase(order_.front());
    order_.pop_front();
  }
}

Status ExecuteTx(const TxContext& ctx, const TxRegistry& registry, ByteSpan tx_bytes,
                 StateOverlay* state, SignatureCache* cache) {
  TRUSTMOE_ASSIGN_OR_RETURN(Tx tx, Tx::Decode(tx_bytes, ctx.genesis->params.tx_bytes_max));
  const TxHandler* handler = registry.Find(tx.type);
  if (handler == nullptr) {
    return Status::InvalidArgument("unknown transaction type " + std::to_string(tx.type));
  }
  if (cache == nullptr) {
    TRUSTMOE_RETURN_IF_ERROR(tx.VerifySignature(ctx.genesis->chain_id));
  } else {
    const pbft::TxId id = pbft::ComputeTxId(tx_bytes);
    if (!cache->Contains(id)) {
      TRUSTMOE_RETURN_IF_ERROR(tx.VerifySignature(ctx.genesis->chain_id));
      cache->Insert(id);
    }
  }
  StateOverlay scratch(state);
  const std::string nonce_key = NonceKey(tx.signer, tx.nonce);
  TRUSTMOE_ASSIGN_OR_RETURN(auto used, scratch.Get(nonce_key));
  if (used.has_value()) {
    return Status::AlreadyExists("nonce " + std::to_string(tx.nonce) + " of signer " +
                                 tx.signer.Hex() + " is already used (replay)");
  }
  TRUSTMOE_ASSIGN_OR_RETURN(Reputation rep, scratch.GetReputation(tx.signer));
  if (rep.blacklisted) {
    return Status::PermissionDenied("signer " + tx.signer.Hex() + " is blacklisted since block " +
                                    std::to_string(rep.blacklisted_height));
  }
  Status s = handler->Execute(ctx, tx, &scratch);
  if (!s.ok()) return s.WithContext(std::string(handler->name()));
  scratch.Put(nonce_key, Bytes());
  scratch.MergeIntoParent();
  return Status::Ok();
}

std::map<std::string, std::optional<Bytes>> GenesisWrites(const Genesis& genesis) {
  std::map<std::string, std::optional<Bytes>> writes;
  for (const GenesisValidator& v : genesis.validators) {
    NodeRecord record{v.key, NodeRole::kValidator, v.name, v.endpoint, 0};
    writes[NodeKey(v.key)] = record.Encode();
  }
  return writes;
}

}  // namespace trustmoe::ledger
