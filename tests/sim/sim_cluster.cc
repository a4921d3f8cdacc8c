#include "sim_cluster.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <map>
#include <memory>
#include <queue>
#include <random>
#include <set>
#include <sstream>
#include <tuple>
#include <unordered_map>

#include "chain/pbft/replica.h"
#include "common/check.h"
#include "crypto/canonical.h"
#include "sim_app.h"

namespace trustmoe::sim {

namespace {

using pbft::Actions;
using pbft::Envelope;
using pbft::MsgType;

enum class EventKind {
  kDeliver,
  kTick,
  kSubmit,
  kClientTx,
  kQuery,
  kReply,
  kCrash,
  kRestart,
  kPartitionStart,
  kPartitionEnd,
  kResend,
  kByzantine,
};

struct Event {
  int64_t time = 0;
  uint64_t order = 0;
  EventKind kind = EventKind::kTick;
  uint32_t node = 0;  // destination replica, or the replica concerned
  uint32_t from = 0;
  uint32_t tx = 0;  // index into txs_
  uint64_t gen = 0;
  uint64_t seq = 0;
  Digest digest{};
  Bytes bytes;
  std::vector<uint32_t> group;
};

struct Later {
  bool operator()(const Event& a, const Event& b) const {
    return std::tie(a.time, a.order) > std::tie(b.time, b.order);
  }
};

struct Node {
  crypto::PrivateKey key;
  std::unique_ptr<SimApp> app;  // survives crashes: it is the durable ledger
  std::unique_ptr<pbft::Replica> replica;
  pbft::DurableState disk;
  bool up = true;
  bool byzantine = false;
  bool torn_crash_pending = false;
  uint64_t timer_gen = 0;
  uint64_t last_commit = 0;
};

struct TxState {
  Bytes tx;
  TxId id{};
  uint32_t client = 0;
  uint32_t replica = 0;  // the one it is submitted to (SimOptions::one_replica_per_tx)
  int64_t submit_ms = 0;
  bool submitted = false;
  bool accepted = false;
  int64_t accepted_ms = 0;
  std::map<std::pair<uint64_t, Digest>, std::set<uint32_t>> replies;
};

struct Decided {
  Digest digest{};
  Bytes block;
  std::set<TxId> txs;
};

// The type byte follows the envelope's domain tag (u32 length + 25 bytes).
bool IsCommit(const Bytes& wire) {
  constexpr size_t kTypeOffset = 4 + 25;
  return wire.size() > kTypeOffset && wire[kTypeOffset] == static_cast<uint8_t>(MsgType::kCommit);
}

std::string Short(const Digest& d) { return crypto::DigestHex(d).substr(0, 8); }

class Simulation {
 public:
  explicit Simulation(const SimOptions& options)
      : opt_(options), mix_(options.mix), rng_(options.seed) {}

  SimResult Run();

 private:
  // Randomness.
  double Uniform() { return std::uniform_real_distribution<double>(0, 1)(rng_); }
  int64_t Range(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }
  bool Chance(double p) { return p > 0 && Uniform() < p; }

  void Push(Event e) {
    e.order = next_order_++;
    queue_.push(std::move(e));
  }
  void Log(const std::string& line) {
    if (opt_.verbose) std::printf("t=%6lld %s\n", static_cast<long long>(now_), line.c_str());
  }
  void Fail(const std::string& invariant, const std::string& detail) {
    if (!result_.ok) return;
    result_.ok = false;
    result_.invariant = invariant;
    result_.detail = detail;
    Log("INVARIANT BROKEN: " + invariant + ": " + detail);
  }

  void Setup();
  void Schedule();
  pbft::Config MakeConfig() const;
  void StartReplica(uint32_t id);
  void Apply(uint32_t id, Actions actions);
  void Crash(uint32_t id);
  void OnCommit(uint32_t id, const pbft::CommitAction& commit);
  void ObserveView(uint32_t id, uint64_t view_before, bool active_before);

  // Network.
  bool Partitioned(uint32_t a, uint32_t b) const;
  int64_t Delay();
  void Send(uint32_t from, uint32_t to, const Bytes& bytes);
  void Transmit(uint32_t from, uint32_t to, const Bytes& bytes);
  void SendReply(uint32_t replica, uint32_t tx, uint64_t seq, const Digest& digest);

  // Byzantine behaviour.
  void ByzantineSend(uint32_t from, uint32_t to, const Bytes& bytes);
  void ByzantineInject(uint32_t id);
  Bytes Mutate(const Bytes& bytes);
  std::vector<uint32_t> Others(uint32_t id) const;

  void Handle(const Event& e);
  void SubmitTx(uint32_t tx);
  void QueryTx(uint32_t tx);
  void CheckEnd();

  const SimOptions opt_;
  const FaultMix mix_;
  std::mt19937_64 rng_;
  std::priority_queue<Event, std::vector<Event>, Later> queue_;
  uint64_t next_order_ = 0;
  int64_t now_ = 0;
  int64_t end_ms_ = 0;
  bool all_accepted_ = false;

  pbft::Config config_;
  std::vector<Node> nodes_;
  std::vector<TxState> txs_;
  std::unordered_map<TxId, uint32_t, pbft::DigestHash> tx_index_;
  std::vector<std::set<uint32_t>> partitions_;  // active: each set is cut off from the rest
  std::map<uint64_t, Decided> decided_;
  std::unordered_map<TxId, uint64_t, pbft::DigestHash> tx_height_;
  std::set<Digest> verified_certs_;
  SimResult result_;
};

pbft::Config Simulation::MakeConfig() const {
  pbft::Config c;
  for (const Node& n : nodes_) c.validators.push_back(n.key.public_key());
  c.f = mix_.f;
  c.checkpoint_interval = 4;
  c.watermark_window = 8;
  c.block_txs_max = 6;
  c.block_bytes_max = 4096;
  c.block_overhead_bytes_max = 1024;
  c.tx_bytes_max = 512;
  c.pool_txs_max = 10000;
  c.pool_bytes_max = 1 << 22;
  c.tx_pending_max_ms = 20000;
  c.request_txs_max = 64;
  c.message_bytes_max = 1 << 20;
  c.view_change_timeout_ms = 500;
  c.view_change_timeout_max_ms = 8000;
  c.status_interval_ms = 250;
  c.fetch_blocks_max = 8;
  c.fetch_timeout_ms = 600;
  return c;
}

void Simulation::Setup() {
  const uint32_t n = 3 * mix_.f + 1;
  for (uint32_t i = 0; i < n; ++i) {
    Node node;
    Digest seed = crypto::CanonicalWriter("trustmoe/sim/validator-key/v1").U32(i).Hash();
    node.key = *crypto::PrivateKey::FromSeed(seed);
    node.app = std::make_unique<SimApp>();
    node.byzantine = i < mix_.byzantine;
    nodes_.push_back(std::move(node));
  }
  config_ = MakeConfig();
  TRUSTMOE_CHECK(config_.Validate().ok());
  for (uint32_t c = 0; c < opt_.clients; ++c) {
    for (uint32_t k = 0; k < opt_.txs_per_client; ++k) {
      TxState t;
      std::string payload = "seed " + std::to_string(opt_.seed) + " client " + std::to_string(c) +
                            " tx " + std::to_string(k);
      t.tx = MakeTx(c, k, AsBytes(payload));
      t.id = pbft::ComputeTxId(t.tx);
      t.client = c;
      t.submit_ms = Range(0, opt_.submit_window_ms);
      // Drawn only in this mode, so that the other seeds replay as before.
      if (opt_.one_replica_per_tx) t.replica = static_cast<uint32_t>(Range(mix_.byzantine, n - 1));
      tx_index_[t.id] = static_cast<uint32_t>(txs_.size());
      txs_.push_back(std::move(t));
    }
  }
}

void Simulation::Schedule() {
  for (uint32_t i = 0; i < txs_.size(); ++i) {
    Event e;
    e.time = txs_[i].submit_ms;
    e.kind = EventKind::kSubmit;
    e.tx = i;
    Push(std::move(e));
  }
  const uint32_t n = static_cast<uint32_t>(nodes_.size());
  for (int p = 0; p < mix_.partitions; ++p) {
    Event start;
    start.time = Range(0, opt_.heal_ms - 1500);
    start.kind = EventKind::kPartitionStart;
    uint32_t size = mix_.split ? n / 2 : static_cast<uint32_t>(Range(1, n / 2));
    std::vector<uint32_t> ids(n);
    for (uint32_t i = 0; i < n; ++i) ids[i] = i;
    std::shuffle(ids.begin(), ids.end(), rng_);
    start.group.assign(ids.begin(), ids.begin() + size);
    Event end = start;
    end.kind = EventKind::kPartitionEnd;
    end.time = std::min(opt_.heal_ms, start.time + Range(300, mix_.partition_max_ms));
    Push(std::move(start));
    Push(std::move(end));
  }
  for (int c = 0; c < mix_.crashes; ++c) {
    Event crash;
    crash.kind = EventKind::kCrash;
    crash.time = Range(0, opt_.heal_ms - 1200);
    crash.node = static_cast<uint32_t>(Range(mix_.byzantine, n - 1));  // honest ones
    Event restart = crash;
    restart.kind = EventKind::kRestart;
    restart.time = std::min(opt_.heal_ms - 200, crash.time + Range(100, mix_.crash_max_ms));
    Push(std::move(crash));
    Push(std::move(restart));
  }
  Event resend;
  resend.time = 1000;
  resend.kind = EventKind::kResend;
  Push(std::move(resend));
  for (uint32_t i = 0; i < mix_.byzantine; ++i) {
    Event b;
    b.time = Range(50, 300);
    b.kind = EventKind::kByzantine;
    b.node = i;
    Push(std::move(b));
  }
}

void Simulation::StartReplica(uint32_t id) {
  Node& node = nodes_[id];
  auto replica = pbft::Replica::Create(config_, id, node.key, node.app.get(), node.disk);
  if (!replica.ok()) {
    Fail("restart", "replica " + std::to_string(id) + ": " + replica.status().ToString());
    return;
  }
  node.replica = std::move(*replica);
  node.up = true;
  node.last_commit = node.app->Head().seq;
  Apply(id, node.replica->Start(now_));
}

void Simulation::Crash(uint32_t id) {
  Node& node = nodes_[id];
  node.up = false;
  node.torn_crash_pending = false;
  node.replica.reset();
  ++node.timer_gen;
  Log("r" + std::to_string(id) + " crashes");
}

void Simulation::Apply(uint32_t id, Actions actions) {
  Node& node = nodes_[id];
  size_t limit = actions.size();
  const bool torn = node.torn_crash_pending;
  if (torn) limit = static_cast<size_t>(Range(0, static_cast<int64_t>(actions.size())));
  for (size_t i = 0; i < limit; ++i) {
    pbft::Action& action = actions[i];
    if (auto* persist = std::get_if<pbft::PersistAction>(&action)) {
      for (pbft::DurableWrite& w : persist->writes) {
        if (w.value) {
          node.disk[w.key] = std::move(*w.value);
        } else {
          node.disk.erase(w.key);
        }
      }
    } else if (auto* send = std::get_if<pbft::SendAction>(&action)) {
      Send(id, send->to, send->bytes);
    } else if (auto* commit = std::get_if<pbft::CommitAction>(&action)) {
      OnCommit(id, *commit);
    } else if (auto* timer = std::get_if<pbft::TimerAction>(&action)) {
      Event tick;
      tick.time = std::max(now_, timer->deadline_ms);
      tick.kind = EventKind::kTick;
      tick.node = id;
      tick.gen = ++node.timer_gen;
      Push(std::move(tick));
    }
  }
  if (torn) {
    Log("r" + std::to_string(id) + " torn crash after " + std::to_string(limit) + " of " +
        std::to_string(actions.size()) + " actions");
    Crash(id);
  }
}

void Simulation::OnCommit(uint32_t id, const pbft::CommitAction& commit) {
  Node& node = nodes_[id];
  Log("r" + std::to_string(id) + " executes seq " + std::to_string(commit.seq) + " " +
      Short(commit.digest) + " txs=" + std::to_string(commit.tx_ids.size()) +
      (commit.via_state_transfer ? " (state transfer)" : ""));
  if (node.byzantine) {
    if (mix_.byzantine_flags & kWrongReplies) {
      for (const TxId& tx : commit.tx_ids) {
        auto it = tx_index_.find(tx);
        Digest fake = commit.digest;
        fake[0] ^= 1;
        if (it != tx_index_.end()) SendReply(id, it->second, commit.seq + 1, fake);
      }
    }
    return;
  }
  if (commit.seq != node.last_commit + 1) {
    Fail("order", "replica " + std::to_string(id) + " executed seq " + std::to_string(commit.seq) +
                      " after " + std::to_string(node.last_commit));
  }
  node.last_commit = commit.seq;
  if (!node.app->violations().empty()) Fail("order", node.app->violations().front());
  Digest cert_key = crypto::Sha256::Hash(commit.cert.Encode());
  if (verified_certs_.count(cert_key) == 0) {
    if (commit.cert.seq != commit.seq || commit.cert.digest != commit.digest ||
        !pbft::VerifyCommitCertificate(config_, commit.cert).ok()) {
      Fail("certificate", "replica " + std::to_string(id) + " executed seq " +
                              std::to_string(commit.seq) + " without a valid certificate");
    }
    verified_certs_.insert(cert_key);
  }
  auto [it, inserted] = decided_.try_emplace(commit.seq);
  if (inserted) {
    it->second.digest = commit.digest;
    it->second.block = commit.block;
    it->second.txs.insert(commit.tx_ids.begin(), commit.tx_ids.end());
  } else if (it->second.digest != commit.digest || it->second.block != commit.block) {
    Fail("agreement", "replica " + std::to_string(id) + " executed " + Short(commit.digest) +
                          " at height " + std::to_string(commit.seq) + " where another honest " +
                          "replica executed " + Short(it->second.digest));
  }
  for (const TxId& tx : commit.tx_ids) {
    auto index = tx_index_.find(tx);
    if (index == tx_index_.end()) {
      Fail("validity", "height " + std::to_string(commit.seq) + " holds a transaction no " +
                           "client submitted");
      continue;
    }
    auto [h, first] = tx_height_.try_emplace(tx, commit.seq);
    if (!first && h->second != commit.seq) {
      Fail("validity", "transaction " + std::to_string(index->second) + " executed at heights " +
                           std::to_string(h->second) + " and " + std::to_string(commit.seq));
    }
    SendReply(id, index->second, commit.seq, commit.digest);
  }
}

void Simulation::ObserveView(uint32_t id, uint64_t view_before, bool active_before) {
  const Node& node = nodes_[id];
  if (!node.replica) return;
  if (node.replica->view() != view_before || node.replica->view_active() != active_before) {
    Log("r" + std::to_string(id) +
        (node.replica->view_active() ? " enters view " : " asks for view ") +
        std::to_string(node.replica->view()));
  }
}

bool Simulation::Partitioned(uint32_t a, uint32_t b) const {
  for (const std::set<uint32_t>& side : partitions_) {
    if ((side.count(a) != 0) != (side.count(b) != 0)) return true;
  }
  return false;
}

int64_t Simulation::Delay() {
  if (Chance(mix_.spike)) return Range(mix_.delay_max_ms, mix_.spike_ms);
  return Range(mix_.delay_min_ms, mix_.delay_max_ms);
}

void Simulation::Send(uint32_t from, uint32_t to, const Bytes& bytes) {
  if (to == pbft::kBroadcast) {
    for (uint32_t r : Others(from)) Send(from, r, bytes);
    return;
  }
  if (nodes_[from].byzantine) return ByzantineSend(from, to, bytes);
  Transmit(from, to, bytes);
}

void Simulation::Transmit(uint32_t from, uint32_t to, const Bytes& bytes) {
  ++result_.messages;
  const bool lossy = now_ < opt_.heal_ms || mix_.drops_after_heal;
  if (lossy && Chance(mix_.drop)) return;
  if (now_ < opt_.heal_ms && mix_.drop_commits > 0 && IsCommit(bytes) &&
      Chance(mix_.drop_commits)) {
    return;
  }
  int copies = Chance(mix_.duplicate) ? 2 : 1;
  for (int i = 0; i < copies; ++i) {
    Event e;
    e.time = now_ + Delay();
    e.kind = EventKind::kDeliver;
    e.node = to;
    e.from = from;
    e.bytes = bytes;
    Push(std::move(e));
  }
}

void Simulation::SendReply(uint32_t replica, uint32_t tx, uint64_t seq, const Digest& digest) {
  const bool lossy = now_ < opt_.heal_ms || mix_.drops_after_heal;
  if (lossy && Chance(mix_.drop)) return;
  Event e;
  e.time = now_ + Delay();
  e.kind = EventKind::kReply;
  e.from = replica;
  e.tx = tx;
  e.seq = seq;
  e.digest = digest;
  Push(std::move(e));
}

std::vector<uint32_t> Simulation::Others(uint32_t id) const {
  std::vector<uint32_t> out;
  for (uint32_t i = 0; i < nodes_.size(); ++i) {
    if (i != id) out.push_back(i);
  }
  return out;
}

Bytes Simulation::Mutate(const Bytes& bytes) {
  Bytes out = bytes;
  switch (Range(0, 3)) {
    case 0:  // flip some bytes
      for (int i = 0, flips = static_cast<int>(Range(1, 4)); i < flips && !out.empty(); ++i) {
        out[static_cast<size_t>(Range(0, static_cast<int64_t>(out.size()) - 1))] ^=
            static_cast<uint8_t>(Range(1, 255));
      }
      break;
    case 1:  // truncate
      out.resize(static_cast<size_t>(Range(0, static_cast<int64_t>(out.size()))));
      break;
    case 2:  // random bytes
      out.resize(static_cast<size_t>(Range(0, 300)));
      for (uint8_t& b : out) b = static_cast<uint8_t>(Range(0, 255));
      break;
    default:  // a huge declared length
      if (out.size() > 40) {
        out[36] = 0xff;
        out[37] = 0xff;
      }
      break;
  }
  return out;
}

// The byzantine replica runs the honest code; what it sends is twisted on the way out.
void Simulation::ByzantineSend(uint32_t from, uint32_t to, const Bytes& bytes) {
  const uint32_t flags = mix_.byzantine_flags;
  Result<Envelope> e = pbft::DecodeEnvelope(bytes, pbft::Limits::Of(config_));
  TRUSTMOE_CHECK(e.ok());
  const crypto::PrivateKey& key = nodes_[from].key;
  if ((flags & kGarbage) && Chance(0.1)) Transmit(from, to, Mutate(bytes));
  if ((flags & kBadSignatures) && Chance(0.3)) {
    Envelope bad = *e;
    bad.signature[static_cast<size_t>(Range(0, 63))] ^= 0x10;
    Transmit(from, to, bad.Encode());
    if (Chance(0.5)) return;  // sometimes only the bad copy
  }
  if ((flags & (kEquivocate | kForgedTxs)) && e->type == MsgType::kPrePrepare &&
      !e->payload.empty()) {
    // Conflicting proposals: the same seq, another block, to some of the replicas.
    if ((flags & kEquivocate) && Chance(0.5)) return Transmit(from, to, bytes);
    Result<pbft::PrePrepare> pp = pbft::PrePrepare::Parse(*e);
    Result<SimBlock> block = SimBlock::Decode(e->payload);
    TRUSTMOE_CHECK(pp.ok() && block.ok());
    block->header.time_ms += 1 + Range(0, 3);
    if (flags & kForgedTxs) {
      block->txs.push_back(
          MakeForgedTx(99, static_cast<uint64_t>(Range(0, 1 << 30)), AsBytes("forged")));
      block->header.tx_root = TxRoot(block->txs);
    }
    Bytes alt = block->Encode();
    pbft::PrePrepare alt_pp{pp->view, pp->seq, crypto::Sha256::Hash(block->header.Encode())};
    Envelope alt_env =
        pbft::SignEnvelope(MsgType::kPrePrepare, from, alt_pp.Body(from), key, std::move(alt));
    return Transmit(from, to, alt_env.Encode());
  }
  if ((flags & kEquivocate) && (e->type == MsgType::kPrepare || e->type == MsgType::kCommit) &&
      Chance(0.3)) {
    Result<pbft::Prepare> vote = e->type == MsgType::kPrepare
                                     ? pbft::Prepare::Parse(*e)
                                     : Result<pbft::Prepare>(Status::Unknown(""));
    Digest other{};
    other[0] = static_cast<uint8_t>(Range(0, 255));
    Bytes body;
    if (vote.ok()) {
      body = pbft::Prepare{vote->view, vote->seq, other}.Body(from);
    } else {
      Result<pbft::Commit> c = pbft::Commit::Parse(*e);
      TRUSTMOE_CHECK(c.ok());
      body = pbft::Commit{c->view, c->seq, other}.Body(from);
    }
    return Transmit(from, to, pbft::SignEnvelope(e->type, from, std::move(body), key).Encode());
  }
  Transmit(from, to, bytes);
}

// Messages a byzantine replica makes up on its own: claims without certificates, lies.
void Simulation::ByzantineInject(uint32_t id) {
  Node& node = nodes_[id];
  const uint32_t flags = mix_.byzantine_flags;
  if (!node.up || !node.replica) return;
  const crypto::PrivateKey& key = node.key;
  const uint32_t n = static_cast<uint32_t>(nodes_.size());
  const uint64_t view = node.replica->view();
  const uint64_t next = node.replica->last_executed() + 1;
  auto to_all = [&](const Envelope& e) {
    for (uint32_t r : Others(id)) Transmit(id, r, e.Encode());
  };
  if (flags & kGarbage) {
    Bytes junk(static_cast<size_t>(Range(0, 200)));
    for (uint8_t& b : junk) b = static_cast<uint8_t>(Range(0, 255));
    std::vector<uint32_t> others = Others(id);
    Transmit(id, others[static_cast<size_t>(Range(0, static_cast<int64_t>(others.size()) - 1))],
             junk);
  }
  if (!(flags & kBogusViews)) return;
  switch (Range(0, 6)) {
    case 0: {  // a pre-prepare for a view it is not primary of
      uint64_t v = view + static_cast<uint64_t>(Range(0, 2));
      if (v % n == id) ++v;
      SimBlock b;
      b.header.height = next;
      b.txs.push_back(MakeTx(0, 0, AsBytes("seed 0 client 0 tx 0")));
      b.header.tx_root = TxRoot(b.txs);
      pbft::PrePrepare pp{v, next, crypto::Sha256::Hash(b.header.Encode())};
      to_all(pbft::SignEnvelope(MsgType::kPrePrepare, id, pp.Body(id), key, b.Encode()));
      break;
    }
    case 1: {  // a new-view for a view it would lead, without a quorum of view-changes
      uint64_t v = view + 1;
      while (v % n != id) ++v;
      pbft::ViewChange vc;
      vc.new_view = v;
      Envelope own = pbft::SignEnvelope(MsgType::kViewChange, id, vc.Body(id), key);
      pbft::NewView nv;
      nv.view = v;
      for (uint32_t i = 0; i < config_.quorum(); ++i) {
        Envelope copy = own;
        if (i > 0 && Chance(0.5)) {  // pretend others sent it
          copy.sender = (id + i) % n;
          copy.body = vc.Body(copy.sender);
        }
        nv.view_changes.push_back(copy);
      }
      to_all(pbft::SignEnvelope(MsgType::kNewView, id, nv.Body(id), key));
      break;
    }
    case 2: {  // prepares and commits for a future view
      Digest d{};
      d[1] = static_cast<uint8_t>(Range(0, 255));
      to_all(pbft::SignEnvelope(MsgType::kPrepare, id, pbft::Prepare{view + 3, next, d}.Body(id),
                                key));
      to_all(
          pbft::SignEnvelope(MsgType::kCommit, id, pbft::Commit{view + 3, next, d}.Body(id), key));
      break;
    }
    case 3: {  // claims to be far ahead
      pbft::StatusMsg s{view, true, next + 1000, next + 996};
      to_all(pbft::SignEnvelope(MsgType::kStatus, id, s.Body(id), key));
      break;
    }
    case 4: {  // a checkpoint with a made-up state
      uint64_t k = config_.checkpoint_interval;
      pbft::Checkpoint cp{(next / k + 1) * k, {}, {}};
      cp.state_digest[2] = static_cast<uint8_t>(Range(0, 255));
      to_all(pbft::SignEnvelope(MsgType::kCheckpoint, id, cp.Body(id), key));
      break;
    }
    case 5: {  // state transfer answer with blocks it cannot certify
      pbft::Blocks reply;
      pbft::BlockEntry entry;
      entry.seq = next;
      entry.cert.seq = next;
      entry.cert.signatures.push_back({id, crypto::Signature{}});
      SimBlock b;
      b.header.height = next;
      entry.block = b.Encode();
      entry.cert.digest = crypto::Sha256::Hash(b.header.Encode());
      reply.entries.push_back(std::move(entry));
      to_all(pbft::SignEnvelope(MsgType::kBlocks, id, reply.Body(id), key));
      break;
    }
    default: {  // a view-change for a far view (legal, but alone it moves nobody)
      pbft::ViewChange vc;
      vc.new_view = view + 50;
      to_all(pbft::SignEnvelope(MsgType::kViewChange, id, vc.Body(id), key));
      break;
    }
  }
}

void Simulation::SubmitTx(uint32_t tx) {
  const uint32_t n = static_cast<uint32_t>(nodes_.size());
  std::vector<uint32_t> targets;
  if (opt_.one_replica_per_tx) {
    targets.push_back(txs_[tx].replica);
  } else if (mix_.submit_to_one) {
    targets.push_back(static_cast<uint32_t>(Range(0, n - 1)));
  } else {
    for (uint32_t i = 0; i < n; ++i) targets.push_back(i);
  }
  const bool lossy = now_ < opt_.heal_ms || mix_.drops_after_heal;
  for (uint32_t r : targets) {
    if (lossy && Chance(mix_.drop)) continue;
    Event e;
    e.time = now_ + Delay();
    e.kind = EventKind::kClientTx;
    e.node = r;
    e.tx = tx;
    Push(std::move(e));
  }
}

// A client that submits to one replica reads the outcome from all of them (as GetTx): a
// replica that executed the transaction answers from its ledger.
void Simulation::QueryTx(uint32_t tx) {
  const bool lossy = now_ < opt_.heal_ms || mix_.drops_after_heal;
  for (uint32_t r = 0; r < nodes_.size(); ++r) {
    if (r == txs_[tx].replica || (lossy && Chance(mix_.drop))) continue;
    Event e;
    e.time = now_ + Delay();
    e.kind = EventKind::kQuery;
    e.node = r;
    e.tx = tx;
    Push(std::move(e));
  }
}

void Simulation::Handle(const Event& e) {
  switch (e.kind) {
    case EventKind::kDeliver:
    case EventKind::kTick:
    case EventKind::kClientTx: {
      Node& node = nodes_[e.node];
      if (!node.up || !node.replica) return;
      if (e.kind == EventKind::kDeliver && Partitioned(e.from, e.node)) return;
      if (e.kind == EventKind::kTick && e.gen != node.timer_gen) return;
      const uint64_t view = node.replica->view();
      const bool active = node.replica->view_active();
      Actions actions;
      if (e.kind == EventKind::kDeliver) {
        actions = node.replica->OnMessage(e.bytes, now_);
      } else if (e.kind == EventKind::kTick) {
        actions = node.replica->OnTick(now_);
      } else {
        Status s = node.replica->SubmitTx(txs_[e.tx].tx, now_, &actions);
        if (s.code() == StatusCode::kAlreadyExists && !node.byzantine) {
          // Committed already: the node answers the client from its ledger.
          auto where = node.app->FindTx(txs_[e.tx].id);
          if (where) SendReply(e.node, e.tx, where->first, where->second);
        }
      }
      ObserveView(e.node, view, active);
      Apply(e.node, std::move(actions));
      return;
    }
    case EventKind::kQuery: {
      const Node& node = nodes_[e.node];
      if (!node.up || !node.replica || node.byzantine) return;
      auto where = node.app->FindTx(txs_[e.tx].id);
      if (where) SendReply(e.node, e.tx, where->first, where->second);
      return;
    }
    case EventKind::kSubmit:
      txs_[e.tx].submitted = true;
      return SubmitTx(e.tx);
    case EventKind::kReply: {
      TxState& t = txs_[e.tx];
      auto& voters = t.replies[{e.seq, e.digest}];
      voters.insert(e.from);
      if (t.accepted || voters.size() < config_.f + 1) return;
      t.accepted = true;
      t.accepted_ms = now_;
      auto d = decided_.find(e.seq);
      if (d == decided_.end() || d->second.digest != e.digest || d->second.txs.count(t.id) == 0) {
        Fail("acceptance", "client accepted transaction " + std::to_string(e.tx) + " at height " +
                               std::to_string(e.seq) + " where no honest replica executed it");
      }
      return;
    }
    case EventKind::kCrash: {
      Node& node = nodes_[e.node];
      if (!node.up) return;
      if (mix_.torn_crashes && Chance(0.5)) {
        node.torn_crash_pending = true;  // crashes within its next step
      } else {
        Crash(e.node);
      }
      return;
    }
    case EventKind::kRestart: {
      Node& node = nodes_[e.node];
      if (node.up && !node.torn_crash_pending) return;
      if (node.up) Crash(e.node);
      Log("r" + std::to_string(e.node) + " restarts");
      return StartReplica(e.node);
    }
    case EventKind::kPartitionStart: {
      partitions_.push_back(std::set<uint32_t>(e.group.begin(), e.group.end()));
      std::string ids;
      for (uint32_t id : e.group) ids += " r" + std::to_string(id);
      Log("partition cuts off" + ids);
      return;
    }
    case EventKind::kPartitionEnd: {
      std::set<uint32_t> side(e.group.begin(), e.group.end());
      auto it = std::find(partitions_.begin(), partitions_.end(), side);
      if (it != partitions_.end()) partitions_.erase(it);
      Log("partition heals");
      return;
    }
    case EventKind::kResend: {
      for (uint32_t i = 0; i < txs_.size(); ++i) {
        if (!txs_[i].submitted || txs_[i].accepted) continue;
        SubmitTx(i);
        if (opt_.one_replica_per_tx) QueryTx(i);
      }
      Event next = e;
      next.time = now_ + 1000;
      Push(std::move(next));
      return;
    }
    case EventKind::kByzantine: {
      ByzantineInject(e.node);
      Event next = e;
      next.time = now_ + Range(100, 400);
      Push(std::move(next));
      return;
    }
  }
}

void Simulation::CheckEnd() {
  if (!result_.ok) return;
  for (uint32_t i = 0; i < txs_.size(); ++i) {
    const TxState& t = txs_[i];
    const int64_t due = std::max(opt_.heal_ms, t.submit_ms) + opt_.liveness_bound_ms;
    if (!t.accepted) {
      auto height = tx_height_.find(t.id);
      return Fail("liveness",
                  "transaction " + std::to_string(i) + " (client " + std::to_string(t.client) +
                      ", submitted at " + std::to_string(t.submit_ms) + " ms" +
                      (opt_.one_replica_per_tx ? " to r" + std::to_string(t.replica) : "") +
                      ") was never accepted; " +
                      (height == tx_height_.end()
                           ? std::string("no honest replica executed it")
                           : "executed at height " + std::to_string(height->second)));
    }
    if (t.accepted_ms > due) {
      return Fail("liveness", "transaction " + std::to_string(i) + " accepted at " +
                                  std::to_string(t.accepted_ms) + " ms, after its bound " +
                                  std::to_string(due) + " ms");
    }
    if (t.accepted_ms > opt_.heal_ms) {
      result_.last_accept_after_heal_ms =
          std::max(result_.last_accept_after_heal_ms, t.accepted_ms - opt_.heal_ms);
    }
  }
  const uint64_t height = decided_.empty() ? 0 : decided_.rbegin()->first;
  for (uint32_t i = 0; i < nodes_.size(); ++i) {
    const Node& node = nodes_[i];
    if (node.byzantine) continue;
    if (!node.up || !node.replica) {
      return Fail("catch-up", "replica " + std::to_string(i) + " is down at the end");
    }
    if (node.replica->last_executed() != height) {
      return Fail("catch-up", "replica " + std::to_string(i) + " executed " +
                                  std::to_string(node.replica->last_executed()) + " of " +
                                  std::to_string(height) + " blocks by the end");
    }
  }
}

SimResult Simulation::Run() {
  Setup();
  Schedule();
  for (uint32_t i = 0; i < nodes_.size(); ++i) StartReplica(i);
  end_ms_ = opt_.heal_ms + opt_.liveness_bound_ms + opt_.settle_ms;
  while (!queue_.empty() && result_.ok) {
    Event e = queue_.top();
    if (e.time > end_ms_) break;
    queue_.pop();
    now_ = e.time;
    Handle(e);
    if (!all_accepted_ && now_ >= opt_.heal_ms &&
        std::all_of(txs_.begin(), txs_.end(), [](const TxState& t) { return t.accepted; })) {
      all_accepted_ = true;
      end_ms_ = std::min(end_ms_, now_ + opt_.settle_ms);
    }
  }
  CheckEnd();
  result_.end_ms = now_;
  result_.height = decided_.empty() ? 0 : decided_.rbegin()->first;
  result_.txs = txs_.size();
  std::array<uint64_t, pbft::kRejectCount> rejects{};
  for (const Node& node : nodes_) {
    if (!node.replica) continue;
    result_.view = std::max(result_.view, node.replica->view());
    if (node.byzantine) continue;
    const pbft::Stats& s = node.replica->stats();
    result_.view_changes += s.view_changes_started;
    result_.state_transfer_blocks += s.blocks_via_state_transfer;
    result_.rejected += s.RejectedTotal();
    for (size_t i = 0; i < pbft::kRejectCount; ++i) rejects[i] += s.rejected[i];
  }
  for (size_t i = 0; i < pbft::kRejectCount; ++i) {
    if (rejects[i] == 0) continue;
    if (!result_.rejects.empty()) result_.rejects += " ";
    result_.rejects += std::string(pbft::RejectName(static_cast<pbft::Reject>(i))) + "=" +
                       std::to_string(rejects[i]);
  }
  return result_;
}

}  // namespace

std::string SimResult::Summary() const {
  std::ostringstream out;
  out << (ok ? "ok" : "FAILED " + invariant + ": " + detail) << " | height " << height << ", view "
      << view << ", txs " << txs << ", view changes " << view_changes << ", state-transfer blocks "
      << state_transfer_blocks << ", messages " << messages << ", rejected " << rejected
      << ", last accept " << last_accept_after_heal_ms << " ms after heal, end " << end_ms << " ms";
  if (!rejects.empty()) out << " | rejected: " << rejects;
  return out.str();
}

std::vector<FaultMix> AllMixes() {
  std::vector<FaultMix> mixes;
  FaultMix clean;
  clean.name = "clean";
  mixes.push_back(clean);

  FaultMix lossy;
  lossy.name = "lossy";
  lossy.drop = 0.08;
  lossy.duplicate = 0.05;
  lossy.delay_max_ms = 40;
  lossy.spike = 0.02;
  lossy.drops_after_heal = true;
  mixes.push_back(lossy);

  FaultMix commitloss;
  commitloss.name = "commitloss";
  commitloss.drop = 0.02;
  commitloss.drop_commits = 0.5;
  commitloss.delay_max_ms = 20;
  mixes.push_back(commitloss);

  FaultMix partition = lossy;
  partition.name = "partition";
  partition.drops_after_heal = false;
  partition.partitions = 3;
  partition.submit_to_one = true;
  mixes.push_back(partition);

  FaultMix split = lossy;
  split.name = "split";
  split.drops_after_heal = false;
  split.partitions = 2;
  split.split = true;
  split.partition_max_ms = 6000;
  mixes.push_back(split);

  FaultMix crash;
  crash.name = "crash";
  crash.drop = 0.03;
  crash.delay_max_ms = 20;
  crash.crashes = 3;
  crash.torn_crashes = true;
  mixes.push_back(crash);

  FaultMix outage = crash;
  outage.name = "outage";
  outage.crashes = 4;
  outage.crash_max_ms = 6000;
  mixes.push_back(outage);

  FaultMix amnesia = commitloss;  // crashes while blocks are prepared but not committed
  amnesia.name = "amnesia";
  amnesia.crashes = 4;
  amnesia.torn_crashes = true;
  mixes.push_back(amnesia);

  FaultMix equivocate;
  equivocate.name = "equivocate";
  equivocate.drop = 0.03;
  equivocate.delay_max_ms = 20;
  equivocate.byzantine = 1;
  equivocate.byzantine_flags = kEquivocate | kWrongReplies;
  mixes.push_back(equivocate);

  FaultMix byzantine;
  byzantine.name = "byzantine";
  byzantine.drop = 0.03;
  byzantine.delay_max_ms = 20;
  byzantine.byzantine = 1;
  byzantine.byzantine_flags = kBadSignatures | kBogusViews | kGarbage | kForgedTxs;
  mixes.push_back(byzantine);

  FaultMix chaos;
  chaos.name = "chaos";
  chaos.drop = 0.05;
  chaos.duplicate = 0.05;
  chaos.delay_max_ms = 30;
  chaos.spike = 0.02;
  chaos.partitions = 2;
  chaos.crashes = 2;
  chaos.torn_crashes = true;
  chaos.byzantine = 1;
  chaos.byzantine_flags =
      kEquivocate | kBadSignatures | kBogusViews | kGarbage | kForgedTxs | kWrongReplies;
  mixes.push_back(chaos);

  FaultMix f2 = chaos;
  f2.name = "f2";
  f2.f = 2;
  f2.byzantine = 2;
  f2.crashes = 2;
  mixes.push_back(f2);
  return mixes;
}

bool MixByName(const std::string& name, FaultMix* out) {
  for (const FaultMix& mix : AllMixes()) {
    if (mix.name == name) {
      *out = mix;
      return true;
    }
  }
  return false;
}

SimResult RunSimulation(const SimOptions& options) { return Simulation(options).Run(); }

}  // namespace trustmoe::sim
