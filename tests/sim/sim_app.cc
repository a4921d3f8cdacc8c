#include "sim_app.h"

#include <algorithm>

#include "crypto/canonical.h"
#include "crypto/cid.h"

namespace trustmoe::sim {

namespace {

using crypto::CanonicalReader;
using crypto::CanonicalWriter;

constexpr uint32_t kTxBytesMax = 1 << 20;
constexpr uint32_t kBlockTxsMax = 1 << 16;

Digest ClientSecret(uint32_t client) {
  return CanonicalWriter("trustmoe/sim/client-secret/v1").U32(client).Hash();
}

Digest Tag(uint32_t client, uint64_t nonce, ByteSpan payload) {
  return CanonicalWriter("trustmoe/sim/tx-tag/v1")
      .Fixed(ClientSecret(client))
      .U32(client)
      .U64(nonce)
      .Blob(payload)
      .Hash();
}

Bytes EncodeTx(uint32_t client, uint64_t nonce, ByteSpan payload, const Digest& tag) {
  return CanonicalWriter("trustmoe/sim/tx/v1")
      .U32(client)
      .U64(nonce)
      .Blob(payload)
      .Fixed(tag)
      .Take();
}

Result<BlockHeader> DecodeHeader(ByteSpan bytes) {
  CanonicalReader r(bytes);
  BlockHeader h;
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain("trustmoe/sim/header/v1"));
  TRUSTMOE_ASSIGN_OR_RETURN(h.height, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(h.view, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(h.proposer, r.U32());
  TRUSTMOE_ASSIGN_OR_RETURN(h.prev_hash, r.Fixed());
  TRUSTMOE_ASSIGN_OR_RETURN(h.tx_root, r.Fixed());
  TRUSTMOE_ASSIGN_OR_RETURN(h.state_root, r.Fixed());
  TRUSTMOE_ASSIGN_OR_RETURN(h.time_ms, r.I64());
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return h;
}

}  // namespace

Bytes MakeTx(uint32_t client, uint64_t nonce, ByteSpan payload) {
  return EncodeTx(client, nonce, payload, Tag(client, nonce, payload));
}

Bytes MakeForgedTx(uint32_t client, uint64_t nonce, ByteSpan payload) {
  Digest tag = Tag(client, nonce, payload);
  tag[0] ^= 0x5a;
  return EncodeTx(client, nonce, payload, tag);
}

Result<SimTx> ParseTx(ByteSpan tx) {
  CanonicalReader r(tx);
  SimTx out;
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain("trustmoe/sim/tx/v1"));
  TRUSTMOE_ASSIGN_OR_RETURN(out.client, r.U32());
  TRUSTMOE_ASSIGN_OR_RETURN(out.nonce, r.U64());
  TRUSTMOE_ASSIGN_OR_RETURN(out.payload, r.Blob(kTxBytesMax));
  TRUSTMOE_ASSIGN_OR_RETURN(Digest tag, r.Fixed());
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  if (tag != Tag(out.client, out.nonce, out.payload)) {
    return Status::Unauthenticated("transaction tag does not verify");
  }
  return out;
}

Bytes BlockHeader::Encode() const {
  return CanonicalWriter("trustmoe/sim/header/v1")
      .U64(height)
      .U64(view)
      .U32(proposer)
      .Fixed(prev_hash)
      .Fixed(tx_root)
      .Fixed(state_root)
      .I64(time_ms)
      .Take();
}

Bytes SimBlock::Encode() const {
  CanonicalWriter w("trustmoe/sim/block/v1");
  w.Blob(header.Encode()).U32(static_cast<uint32_t>(txs.size()));
  for (const Bytes& tx : txs) w.Blob(tx);
  return w.Take();
}

Result<SimBlock> SimBlock::Decode(ByteSpan bytes) {
  CanonicalReader r(bytes);
  SimBlock b;
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectDomain("trustmoe/sim/block/v1"));
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes header, r.Blob(1024));
  TRUSTMOE_ASSIGN_OR_RETURN(b.header, DecodeHeader(header));
  TRUSTMOE_ASSIGN_OR_RETURN(uint32_t count, r.U32());
  if (count > kBlockTxsMax) return Status::InvalidArgument("too many transactions");
  for (uint32_t i = 0; i < count; ++i) {
    TRUSTMOE_ASSIGN_OR_RETURN(Bytes tx, r.Blob(kTxBytesMax));
    b.txs.push_back(std::move(tx));
  }
  TRUSTMOE_RETURN_IF_ERROR(r.ExpectEnd());
  return b;
}

Digest TxRoot(const std::vector<Bytes>& txs) {
  if (txs.empty()) return Digest{};
  std::vector<Digest> leaves;
  for (const Bytes& tx : txs) leaves.push_back(pbft::ComputeTxId(tx));
  return crypto::MerkleRoot(leaves);
}

SimApp::SimApp(int64_t time_skew_ms) : time_skew_ms_(time_skew_ms) {
  head_digest_ = CanonicalWriter("trustmoe/sim/genesis/v1").Hash();
}

pbft::ExecutedHead SimApp::Head() {
  return pbft::ExecutedHead{chain_.size(), head_digest_, state_};
}

Status SimApp::CheckTx(ByteSpan tx) {
  TRUSTMOE_ASSIGN_OR_RETURN(SimTx parsed, ParseTx(tx));
  if (used_nonces_.count({parsed.client, parsed.nonce}) != 0) {
    return Status::AlreadyExists("nonce already used");
  }
  return Status::Ok();
}

Bytes SimApp::ProposeBlock(const pbft::BlockContext& ctx, const std::vector<Bytes>& txs) {
  SimBlock b;
  std::set<std::pair<uint32_t, uint64_t>> nonces;
  for (const Bytes& tx : txs) {
    Result<SimTx> parsed = ParseTx(tx);
    if (!parsed.ok() || used_nonces_.count({parsed->client, parsed->nonce}) != 0 ||
        !nonces.insert({parsed->client, parsed->nonce}).second) {
      continue;
    }
    b.txs.push_back(tx);
  }
  b.header.height = ctx.seq;
  b.header.view = ctx.view;
  b.header.proposer = ctx.proposer;
  b.header.prev_hash = head_digest_;
  b.header.tx_root = TxRoot(b.txs);
  b.header.state_root = state_;
  b.header.time_ms = std::max(ctx.now_ms, last_time_ms_);
  return b.Encode();
}

Status SimApp::CheckLink(const BlockHeader& h, uint64_t seq) const {
  if (h.height != seq) return Status::InvalidArgument("wrong height");
  if (seq != chain_.size() + 1) return Status::FailedPrecondition("not the next block");
  if (h.prev_hash != head_digest_) return Status::InvalidArgument("prev_hash does not link");
  if (h.state_root != state_) return Status::InvalidArgument("wrong state root");
  if (h.time_ms < last_time_ms_) return Status::InvalidArgument("time goes backwards");
  return Status::Ok();
}

Status SimApp::ValidateBlock(const pbft::BlockContext& ctx, ByteSpan block) {
  TRUSTMOE_ASSIGN_OR_RETURN(SimBlock b, SimBlock::Decode(block));
  TRUSTMOE_RETURN_IF_ERROR(CheckLink(b.header, ctx.seq));
  if (b.header.view != ctx.view || b.header.proposer != ctx.proposer) {
    return Status::InvalidArgument("wrong view or proposer");
  }
  if (b.header.time_ms > ctx.now_ms + time_skew_ms_) {
    return Status::InvalidArgument("block time is in the future");
  }
  if (b.header.tx_root != TxRoot(b.txs)) return Status::InvalidArgument("wrong tx root");
  std::set<std::pair<uint32_t, uint64_t>> nonces;
  for (const Bytes& tx : b.txs) {
    TRUSTMOE_ASSIGN_OR_RETURN(SimTx parsed, ParseTx(tx));
    if (used_nonces_.count({parsed.client, parsed.nonce}) != 0 ||
        !nonces.insert({parsed.client, parsed.nonce}).second) {
      return Status::InvalidArgument("nonce replayed");
    }
  }
  return Status::Ok();
}

Status SimApp::CheckCommittedBlock(uint64_t seq, ByteSpan block) {
  TRUSTMOE_ASSIGN_OR_RETURN(SimBlock b, SimBlock::Decode(block));
  TRUSTMOE_RETURN_IF_ERROR(CheckLink(b.header, seq));
  if (b.header.tx_root != TxRoot(b.txs)) return Status::InvalidArgument("wrong tx root");
  return Status::Ok();
}

Result<std::vector<Bytes>> SimApp::TxsOf(ByteSpan block) {
  TRUSTMOE_ASSIGN_OR_RETURN(SimBlock b, SimBlock::Decode(block));
  return std::move(b.txs);
}

Result<Digest> SimApp::BlockDigest(ByteSpan block) {
  TRUSTMOE_ASSIGN_OR_RETURN(SimBlock b, SimBlock::Decode(block));
  return crypto::Sha256::Hash(b.header.Encode());
}

bool SimApp::IsTxCommitted(const TxId& id) { return tx_height_.count(id) != 0; }

Digest SimApp::ExecuteBlock(const pbft::CommittedBlock& block) {
  if (block.seq != chain_.size() + 1) {
    violations_.push_back("ExecuteBlock at seq " + std::to_string(block.seq) + " after " +
                          std::to_string(chain_.size()));
  }
  std::vector<Bytes> txs;
  if (!block.block.empty()) {
    Result<SimBlock> b = SimBlock::Decode(block.block);
    if (!b.ok()) {
      violations_.push_back("executed block " + std::to_string(block.seq) + " does not decode");
    } else {
      txs = b->txs;
      last_time_ms_ = std::max(last_time_ms_, b->header.time_ms);
    }
  }
  for (const Bytes& tx : txs) {
    TxId id = pbft::ComputeTxId(tx);
    if (!tx_height_.emplace(id, block.seq).second) {
      violations_.push_back("transaction executed twice, again at seq " +
                            std::to_string(block.seq));
    }
    Result<SimTx> parsed = ParseTx(tx);
    if (parsed.ok()) used_nonces_.insert({parsed->client, parsed->nonce});
  }
  state_ = CanonicalWriter("trustmoe/sim/state/v1").Fixed(state_).Fixed(block.digest).Hash();
  head_digest_ = block.digest;
  chain_.push_back(block);
  return state_;
}

Result<pbft::CommittedBlock> SimApp::ReadBlock(uint64_t seq) {
  if (seq == 0 || seq > chain_.size()) return Status::NotFound("no block " + std::to_string(seq));
  return chain_[seq - 1];
}

std::optional<std::pair<uint64_t, Digest>> SimApp::FindTx(const TxId& id) const {
  auto it = tx_height_.find(id);
  if (it == tx_height_.end()) return std::nullopt;
  return std::make_pair(it->second, chain_[it->second - 1].digest);
}

}  // namespace trustmoe::sim
