// A deterministic in-memory Application for the simulator and the replica tests. It mirrors
// what the ledger does: a block is a header (height, view, proposer, prev_hash, tx Merkle root,
// state root of the previous block, time) plus transactions, and its digest is the header hash.
//
// Transactions: "trustmoe/sim/tx/v1" u32 client, u64 nonce, bytes payload, digest tag, where the
// tag is SHA-256 of the client's secret and the fields before it: a stand-in for a client
// signature that a byzantine replica cannot forge. A (client, nonce) is accepted once.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "chain/pbft/application.h"
#include "chain/pbft/replica.h"

namespace trustmoe::sim {

using pbft::Digest;
using pbft::TxId;

struct SimTx {
  uint32_t client = 0;
  uint64_t nonce = 0;
  Bytes payload;
};

// A correctly tagged transaction.
Bytes MakeTx(uint32_t client, uint64_t nonce, ByteSpan payload);
// A transaction whose tag is wrong (what a byzantine replica can make up).
Bytes MakeForgedTx(uint32_t client, uint64_t nonce, ByteSpan payload);
// Decodes and checks the tag. InvalidArgument / Unauthenticated otherwise.
Result<SimTx> ParseTx(ByteSpan tx);

struct BlockHeader {
  uint64_t height = 0;
  uint64_t view = 0;
  uint32_t proposer = 0;
  Digest prev_hash{};
  Digest tx_root{};
  Digest state_root{};
  int64_t time_ms = 0;
  Bytes Encode() const;
};

struct SimBlock {
  BlockHeader header;
  std::vector<Bytes> txs;
  Bytes Encode() const;
  static Result<SimBlock> Decode(ByteSpan bytes);
};

Digest TxRoot(const std::vector<Bytes>& txs);

class SimApp final : public pbft::Application {
 public:
  // `time_skew_ms`: how far in the future a proposed block's time may be.
  explicit SimApp(int64_t time_skew_ms = 5000);

  pbft::ExecutedHead Head() override;
  Status CheckTx(ByteSpan tx) override;
  Bytes ProposeBlock(const pbft::BlockContext& ctx, const std::vector<Bytes>& txs) override;
  Status ValidateBlock(const pbft::BlockContext& ctx, ByteSpan block) override;
  Status CheckCommittedBlock(uint64_t seq, ByteSpan block) override;
  Result<std::vector<Bytes>> TxsOf(ByteSpan block) override;
  Result<Digest> BlockDigest(ByteSpan block) override;
  bool IsTxCommitted(const TxId& id) override;
  Digest ExecuteBlock(const pbft::CommittedBlock& block) override;
  Result<pbft::CommittedBlock> ReadBlock(uint64_t seq) override;

  // The executed chain: chain()[i] is the block at seq i + 1.
  const std::vector<pbft::CommittedBlock>& chain() const { return chain_; }
  // Height and block digest where a transaction was executed.
  std::optional<std::pair<uint64_t, Digest>> FindTx(const TxId& id) const;
  // Broken expectations seen by ExecuteBlock (out-of-order execution, a tx executed twice).
  const std::vector<std::string>& violations() const { return violations_; }

 private:
  Status CheckLink(const BlockHeader& h, uint64_t seq) const;

  int64_t time_skew_ms_;
  std::vector<pbft::CommittedBlock> chain_;
  Digest head_digest_{};
  Digest state_{};
  int64_t last_time_ms_ = 0;
  std::unordered_map<TxId, uint64_t, pbft::DigestHash> tx_height_;
  std::set<std::pair<uint32_t, uint64_t>> used_nonces_;
  std::vector<std::string> violations_;
};

}  // namespace trustmoe::sim
