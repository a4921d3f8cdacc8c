// Test validators (n = 4, f = 1) with deterministic keys, and helpers to build and certify
// blocks as a PBFT replica would.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "chain/ledger/block.h"
#include "chain/ledger/state.h"
#include "chain/pbft/messages.h"
#include "crypto/ed25519.h"

namespace trustmoe::ledger::testing {

// Committed state in a map, for executing transactions without a ledger: Apply keeps an
// overlay's writes (erasing deleted keys). Scan is not needed by the handlers and returns
// nothing.
class MapState : public StateReader {
 public:
  Result<std::optional<Bytes>> Get(const std::string& key) const override {
    auto it = map.find(key);
    if (it == map.end()) return std::optional<Bytes>();
    return std::optional<Bytes>(it->second);
  }
  Result<std::vector<std::pair<std::string, Bytes>>> Scan(const std::string&, const std::string&,
                                                          size_t) const override {
    return std::vector<std::pair<std::string, Bytes>>();
  }
  void Apply(const StateOverlay& o) {
    for (const auto& [k, v] : o.writes()) {
      if (v) {
        map[k] = *v;
      } else {
        map.erase(k);
      }
    }
  }
  std::map<std::string, Bytes> map;
};

inline crypto::PrivateKey KeyFromByte(uint8_t b) {
  Bytes seed(32, b);
  return crypto::PrivateKey::FromSeed(seed).value();
}

struct Validators {
  std::vector<crypto::PrivateKey> keys;
  ValidatorSet set;

  Validators() {
    for (uint8_t i = 0; i < 4; ++i) {
      keys.push_back(KeyFromByte(static_cast<uint8_t>(i + 1)));
      set.keys.push_back(keys.back().public_key());
    }
    set.f = 1;
  }

  // The signature validator `id` puts in its commit message for (view, seq, digest).
  static crypto::Signature SignCommit(const crypto::PrivateKey& key, uint32_t id, uint64_t view,
                                      uint64_t seq, const Digest& digest) {
    return key.Sign(pbft::Commit{view, seq, digest}.Body(id));
  }

  CommitCertificate Certify(uint64_t view, uint64_t seq, const Digest& digest,
                            const std::vector<uint32_t>& signers = {0, 1, 2}) const {
    CommitCertificate cert{view, seq, digest, {}};
    for (uint32_t id : signers) {
      cert.signatures.emplace_back(id, SignCommit(keys[id], id, view, seq, digest));
    }
    return cert;
  }
};

inline Bytes Tx(const std::string& text) { return Bytes(text.begin(), text.end()); }

inline Block MakeBlock(uint64_t height, const Digest& prev, std::vector<Bytes> txs,
                       uint64_t view = 0) {
  Block b;
  b.header.height = height;
  b.header.view = view;
  b.header.prev_hash = prev;
  b.header.tx_root = TxRoot(txs);
  b.header.state_root = crypto::Sha256::Hash(Tx("state " + std::to_string(height - 1)));
  b.header.time_unix_ms = 1700000000000 + static_cast<int64_t>(height);
  b.header.proposer = static_cast<uint32_t>(view % 4);
  b.txs = std::move(txs);
  return b;
}

}  // namespace trustmoe::ledger::testing
