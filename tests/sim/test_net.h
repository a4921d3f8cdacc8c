// A hand-driven cluster for scripted replica tests: messages wait in a list until the test
// delivers them (all, or those a filter keeps), time moves only when the test says so.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <variant>
#include <vector>

#include "chain/pbft/replica.h"
#include "common/check.h"
#include "crypto/canonical.h"
#include "sim_app.h"

namespace trustmoe::sim {

struct TestMsg {
  uint32_t from = 0;
  uint32_t to = 0;
  pbft::MsgType type = pbft::MsgType::kStatus;
  Bytes bytes;
};

class TestNet {
 public:
  struct Node {
    crypto::PrivateKey key;
    std::unique_ptr<SimApp> app;
    std::unique_ptr<pbft::Replica> replica;
    pbft::DurableState disk;
    std::vector<pbft::CommitAction> commits;
    bool up = true;
  };

  explicit TestNet(uint32_t f = 1, std::function<void(pbft::Config*)> tweak = {}) {
    const uint32_t n = 3 * f + 1;
    for (uint32_t i = 0; i < n; ++i) {
      Node node;
      Digest seed = crypto::CanonicalWriter("trustmoe/test/validator-key/v1").U32(i).Hash();
      node.key = *crypto::PrivateKey::FromSeed(seed);
      node.app = std::make_unique<SimApp>();
      config.validators.push_back(node.key.public_key());
      nodes.push_back(std::move(node));
    }
    config.f = f;
    config.checkpoint_interval = 4;
    config.watermark_window = 8;
    config.block_txs_max = 4;
    config.block_bytes_max = 4096;
    config.block_overhead_bytes_max = 1024;
    config.tx_bytes_max = 512;
    config.message_bytes_max = 1 << 20;
    config.view_change_timeout_ms = 1000;
    config.view_change_timeout_max_ms = 8000;
    config.status_interval_ms = 200;
    config.fetch_blocks_max = 4;
    config.fetch_timeout_ms = 500;
    if (tweak) tweak(&config);
    for (uint32_t i = 0; i < n; ++i) Start(i);
  }

  uint32_t n() const { return static_cast<uint32_t>(nodes.size()); }
  pbft::Replica& r(uint32_t i) { return *nodes[i].replica; }

  void Start(uint32_t i) {
    Node& node = nodes[i];
    auto replica = pbft::Replica::Create(config, i, node.key, node.app.get(), node.disk);
    TRUSTMOE_CHECK(replica.ok());
    node.replica = std::move(*replica);
    node.up = true;
    Apply(i, node.replica->Start(now));
  }

  // Drops the replica object and everything in flight to it; its disk and app stay.
  void Crash(uint32_t i) {
    nodes[i].replica.reset();
    nodes[i].up = false;
  }

  void Apply(uint32_t i, pbft::Actions actions) {
    for (pbft::Action& action : actions) {
      if (auto* persist = std::get_if<pbft::PersistAction>(&action)) {
        for (pbft::DurableWrite& w : persist->writes) {
          if (w.value) {
            nodes[i].disk[w.key] = *w.value;
          } else {
            nodes[i].disk.erase(w.key);
          }
        }
      } else if (auto* send = std::get_if<pbft::SendAction>(&action)) {
        pbft::MsgType type = static_cast<pbft::MsgType>(send->bytes[4 + 25]);
        for (uint32_t to = 0; to < n(); ++to) {
          if (to == i || (send->to != pbft::kBroadcast && send->to != to)) continue;
          inflight.push_back(TestMsg{i, to, type, send->bytes});
          if (tap) tapped.push_back(inflight.back());
        }
      } else if (auto* commit = std::get_if<pbft::CommitAction>(&action)) {
        nodes[i].commits.push_back(*commit);
      }
    }
  }

  Status Submit(uint32_t i, const Bytes& tx) {
    pbft::Actions actions;
    Status s = r(i).SubmitTx(tx, now, &actions);
    Apply(i, std::move(actions));
    return s;
  }

  void Deliver(const TestMsg& m) {
    if (!nodes[m.to].up) return;
    Apply(m.to, r(m.to).OnMessage(m.bytes, now));
  }

  // Delivers messages in order (new ones join the end) until none is left; messages the
  // filter refuses are dropped. Returns the number delivered.
  size_t Run(const std::function<bool(const TestMsg&)>& keep = {}, size_t max = 100000) {
    size_t delivered = 0;
    while (!inflight.empty() && delivered < max) {
      TestMsg m = std::move(inflight.front());
      inflight.pop_front();
      if (!nodes[m.from].up || !nodes[m.to].up || (keep && !keep(m))) continue;
      Deliver(m);
      ++delivered;
    }
    return delivered;
  }

  // Moves time forward by `ms` and ticks every replica that is up.
  void Advance(int64_t ms) {
    now += ms;
    for (uint32_t i = 0; i < n(); ++i) {
      if (nodes[i].up) Apply(i, r(i).OnTick(now));
    }
  }

  // Removes and returns the messages in flight that `pick` selects.
  std::vector<TestMsg> Take(const std::function<bool(const TestMsg&)>& pick) {
    std::vector<TestMsg> out;
    std::deque<TestMsg> rest;
    for (TestMsg& m : inflight) {
      if (pick(m)) {
        out.push_back(std::move(m));
      } else {
        rest.push_back(std::move(m));
      }
    }
    inflight = std::move(rest);
    return out;
  }

  pbft::Config config;
  std::vector<Node> nodes;
  std::deque<TestMsg> inflight;
  int64_t now = 1000;
  bool tap = false;  // keep a copy of every message sent in `tapped`
  std::vector<TestMsg> tapped;
};

inline Bytes Tx(uint64_t k) { return MakeTx(7, k, AsBytes("tx " + std::to_string(k))); }

}  // namespace trustmoe::sim
