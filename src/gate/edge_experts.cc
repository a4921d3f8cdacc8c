#include "gate/edge_experts.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "chain/ledger/report.h"
#include "chain/ledger/result.h"
#include "chain/ledger/tx.h"
#include "common/log.h"
#include "crypto/cid.h"
#include "trustmoe/v1/edge.grpc.pb.h"

namespace trustmoe::gate {
namespace {

namespace v1 = ::trustmoe::v1;
using Clock = std::chrono::steady_clock;

constexpr int kFailuresToDrop = 3;       // consecutive failed calls before an edge is dropped
constexpr int64_t kCommitPollMs = 25;

std::string Hex8(const crypto::PublicKey& key) { return key.Hex().substr(0, 8); }

// Verdicts of the job's results as the chain finalizes them.
class VerdictTracker {
 public:
  using OnRejected = std::function<void(const crypto::PublicKey&, const std::string&)>;

  VerdictTracker(chain::ChainClient* chain, std::string job, uint64_t from_height,
                 OnRejected on_rejected)
      : chain_(chain), job_(std::move(job)), from_height_(from_height),
        on_rejected_(std::move(on_rejected)) {
    thread_ = std::thread([this] { Run(); });
  }

  ~VerdictTracker() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    canceller_.Cancel();
    cv_.notify_all();
    thread_.join();
  }

  // The verdict on (edge, nonce): true accepted, false rejected; nullopt at the deadline.
  std::optional<bool> Wait(const crypto::PublicKey& edge, uint64_t nonce, Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    const auto key = std::make_pair(edge, nonce);
    cv_.wait_until(lock, deadline, [&] { return stop_ || verdicts_.count(key) > 0; });
    auto it = verdicts_.find(key);
    if (it == verdicts_.end()) return std::nullopt;
    return it->second;
  }

  uint64_t accepted() const {
    std::lock_guard lock(mu_);
    return accepted_;
  }
  uint64_t rejected() const {
    std::lock_guard lock(mu_);
    return rejected_;
  }

 private:
  void Run() {
    uint64_t from = from_height_;
    for (;;) {
      {
        std::lock_guard lock(mu_);
        if (stop_) return;
      }
      chain::VerdictQuery query;
      query.job = job_;
      query.from_height = from;
      query.canceller = &canceller_;
      Status s = chain_->WatchVerdicts(query, [&](const chain::ResultEntry& entry) {
        const bool accepted = entry.record.status == ledger::ResultStatus::kAccepted;
        from = std::max(from, entry.record.verdict_height);
        bool fresh = false;
        {
          std::lock_guard lock(mu_);
          fresh = verdicts_.emplace(std::make_pair(entry.record.edge, entry.record.nonce), accepted)
                      .second;
          if (fresh) (accepted ? accepted_ : rejected_)++;
        }
        cv_.notify_all();
        if (fresh && !accepted && on_rejected_) {
          on_rejected_(entry.record.edge, "result " + std::to_string(entry.record.nonce) +
                                              " REJECTED: " + entry.record.reason);
        }
        return true;
      });
      std::unique_lock lock(mu_);
      if (stop_) return;
      TM_WARN("job {}: verdict watch ended ({}); watching again", job_, s.ToString());
      cv_.wait_for(lock, std::chrono::milliseconds(500), [&] { return stop_; });
    }
  }

  chain::ChainClient* chain_;
  const std::string job_;
  const uint64_t from_height_;
  OnRejected on_rejected_;
  chain::WatchCanceller canceller_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::map<std::pair<crypto::PublicKey, uint64_t>, bool> verdicts_;
  uint64_t accepted_ = 0;
  uint64_t rejected_ = 0;
  std::thread thread_;
};

struct EdgeConn {
  std::string name;
  std::string endpoint;
  std::unique_ptr<v1::EdgeService::Stub> stub;
  bool dropped = false;
  int failures = 0;  // consecutive
};

struct Slot {
  std::string cid;
  std::vector<crypto::PublicKey> holders;
  uint64_t next = 0;  // round robin over the holders
  // Backward results on `cid` since the last update, per edge.
  std::map<crypto::PublicKey, std::vector<uint64_t>> sources;
};

enum class Kind { kForward, kBackward };

}  // namespace

class EdgeExperts::Impl {
 public:
  Impl(EdgeExpertsOptions options, chain::ChainClient* chain, const crypto::PrivateKey* key)
      : options_(std::move(options)), chain_(chain), key_(key) {}

  ~Impl() { tracker_.reset(); }

  Status Init(std::vector<std::string> cids, std::vector<ledger::PlacementEntry> placement) {
    TRUSTMOE_RETURN_IF_ERROR(RefreshEdges());
    slots_.resize(cids.size());
    for (size_t i = 0; i < cids.size(); ++i) slots_[i].cid = cids[i];
    for (const ledger::PlacementEntry& e : placement) {
      if (e.index >= slots_.size()) continue;
      slots_[e.index].cid = e.expert_cid;
      for (const auto& edge : e.edges) {
        if (edges_.count(edge) && !edges_[edge].dropped) slots_[e.index].holders.push_back(edge);
      }
    }
    std::vector<uint32_t> changed;
    {
      std::lock_guard lock(mu_);
      for (uint32_t i = 0; i < slots_.size(); ++i) {
        if (FillHolders(i, {})) changed.push_back(i);
      }
      if (ServingEdges() == 0) {
        return Status::FailedPrecondition(
            "no registered edge is serving: register edges (trustmoe node register --role edge) "
            "and start them");
      }
    }
    if (!changed.empty() || !placement.empty()) TRUSTMOE_RETURN_IF_ERROR(RecordPlacement(changed));
    auto head = chain_->GetHead();
    const uint64_t from = head.ok() ? head->height + 1 : options_.verdicts_from_height;
    tracker_ = std::make_unique<VerdictTracker>(
        chain_, options_.job, std::min(from, std::max<uint64_t>(options_.verdicts_from_height, 1)),
        [this](const crypto::PublicKey& edge, const std::string& why) {
          if (options_.spec.verify != VerifyMode::kOff) Drop(edge, why);
        });
    return Status::Ok();
  }

  std::vector<std::optional<edge::HostTensor>> Run(Kind kind, uint32_t layer, uint64_t step,
                                                   const std::vector<ExpertRows>& routed,
                                                   const std::vector<std::optional<edge::HostTensor>>* grads) {
    std::vector<std::optional<edge::HostTensor>> out(routed.size());
    std::vector<std::future<std::optional<edge::HostTensor>>> futures(routed.size());
    for (size_t i = 0; i < routed.size(); ++i) {
      if (kind == Kind::kBackward && !(*grads)[i]) continue;
      const uint32_t index = layer * options_.spec.experts + routed[i].expert;
      const edge::HostTensor* g = kind == Kind::kBackward ? &*(*grads)[i] : nullptr;
      futures[i] = std::async(std::launch::async, [this, kind, index, step, &routed, i, g] {
        return Call(kind, index, step, routed[i].input, g);
      });
    }
    for (size_t i = 0; i < routed.size(); ++i) {
      if (futures[i].valid()) out[i] = futures[i].get();
    }
    std::vector<uint32_t> changed;
    {
      std::lock_guard lock(mu_);
      changed.swap(pending_placement_);
    }
    if (!changed.empty()) {
      Status s = RecordPlacement(changed);
      if (!s.ok()) TM_WARN("job {}: recording the new placement: {}", options_.job, s.ToString());
    }
    return out;
  }

  Status Update(uint64_t step) {
    struct Pending {
      uint32_t index;
      crypto::PublicKey edge;
      std::string parent;
      std::vector<uint64_t> sources;
    };
    std::vector<Pending> pending;
    {
      std::lock_guard lock(mu_);
      for (uint32_t i = 0; i < slots_.size(); ++i) {
        Slot& slot = slots_[i];
        if (slot.sources.empty()) continue;
        // The edge with the most backward results on this version applies the step.
        auto best = std::max_element(slot.sources.begin(), slot.sources.end(),
                                     [](const auto& a, const auto& b) {
                                       return a.second.size() < b.second.size();
                                     });
        if (!edges_[best->first].dropped) {
          pending.push_back({i, best->first, slot.cid, best->second});
        }
        slot.sources.clear();
      }
    }
    if (pending.empty()) return Status::Ok();
    std::vector<std::future<Result<std::string>>> futures;
    for (const Pending& p : pending) {
      futures.push_back(std::async(std::launch::async, [this, &p, step] {
        return UpdateOne(p.edge, p.parent, p.sources, step);
      }));
    }
    size_t failed = 0;
    Status last;
    std::vector<crypto::PublicKey> drop;
    for (size_t i = 0; i < pending.size(); ++i) {
      Result<std::string> child = futures[i].get();
      std::lock_guard lock(mu_);
      if (child.ok()) {
        slots_[pending[i].index].cid = *child;
        ++stats_.updates;
      } else {
        ++failed;
        last = child.status();
        if (++edges_[pending[i].edge].failures >= kFailuresToDrop) {
          drop.push_back(pending[i].edge);
        }
        TM_WARN("job {}: update of expert {} on edge {} failed, keeping {}: {}", options_.job,
                pending[i].index, Hex8(pending[i].edge), pending[i].parent,
                child.status().ToString());
      }
    }
    for (const auto& edge : drop) Drop(edge, "its updates keep failing: " + last.message());
    if (!drop.empty()) {
      std::vector<uint32_t> changed;
      {
        std::lock_guard lock(mu_);
        changed.swap(pending_placement_);
      }
      if (Status s = RecordPlacement(changed); !s.ok()) {
        TM_WARN("job {}: recording the new placement: {}", options_.job, s.ToString());
      }
    }
    // A step whose updates all failed leaves the experts as they were; only a run of them (the
    // chain or the store gone) stops the job.
    all_failed_steps_ = failed == pending.size() ? all_failed_steps_ + 1 : 0;
    if (all_failed_steps_ >= kFailuresToDrop) {
      return last.WithContext("every expert update failed in " + std::to_string(all_failed_steps_) +
                              " steps in a row (last: step " + std::to_string(step) + ")");
    }
    return Status::Ok();
  }

  Status Settle() {
    std::vector<std::pair<crypto::PublicKey, uint64_t>> results;
    {
      std::lock_guard lock(mu_);
      results.swap(unsettled_);
    }
    const auto deadline = Clock::now() + std::chrono::milliseconds(options_.verdict_timeout_ms);
    size_t rejected = 0, late = 0;
    for (const auto& [edge, nonce] : results) {
      auto verdict = tracker_->Wait(edge, nonce, deadline);
      if (!verdict) {
        ++late;
        // An edge whose results get no verdict is not used again for this job: its results
        // may never have reached the chain.
        Drop(edge, "no verdict on result " + std::to_string(nonce) + " within " +
                       std::to_string(options_.verdict_timeout_ms) + " ms");
      } else if (!*verdict) {
        ++rejected;  // the tracker dropped the edge
      }
    }
    if (rejected == 0 && late == 0) return Status::Ok();
    {
      std::lock_guard lock(mu_);
      for (Slot& slot : slots_) slot.sources.clear();
      stats_.rerouted += rejected + late;
    }
    std::vector<uint32_t> changed;
    {
      std::lock_guard lock(mu_);
      changed.swap(pending_placement_);
    }
    if (!changed.empty()) {
      Status s = RecordPlacement(changed);
      if (!s.ok()) TM_WARN("job {}: recording the new placement: {}", options_.job, s.ToString());
    }
    return Status::Aborted(std::to_string(rejected) + " result(s) REJECTED and " +
                           std::to_string(late) + " without a verdict in time");
  }

  std::vector<std::string> ExpertCids() const {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (const Slot& s : slots_) out.push_back(s.cid);
    return out;
  }

  ExpertCallStats Stats() const {
    std::lock_guard lock(mu_);
    ExpertCallStats s = stats_;
    if (tracker_) {
      s.verified = tracker_->accepted();
      s.rejected = tracker_->rejected();
    }
    return s;
  }

  std::vector<ledger::PlacementEntry> Placement() const {
    std::lock_guard lock(mu_);
    return PlacementLocked();
  }

 private:
  std::vector<ledger::PlacementEntry> PlacementLocked() const {
    std::vector<ledger::PlacementEntry> out;
    for (uint32_t i = 0; i < slots_.size(); ++i) {
      ledger::PlacementEntry e;
      e.index = i;
      e.expert_cid = slots_[i].cid;
      e.edges = slots_[i].holders;
      out.push_back(std::move(e));
    }
    return out;
  }

  // Reads the registry: every registered edge with an endpoint that is not blacklisted, and
  // whether it serves (Health).
  Status RefreshEdges() {
    std::vector<chain::NodeEntry> nodes;
    std::string after;
    for (;;) {
      TRUSTMOE_ASSIGN_OR_RETURN(auto page, chain_->ListNodes(after, 1000));
      if (page.empty()) break;
      after = page.back().record.key.Hex();
      for (auto& n : page) nodes.push_back(std::move(n));
      if (page.size() < 1000) break;
    }
    std::lock_guard lock(mu_);
    for (const chain::NodeEntry& n : nodes) {
      if (n.record.role != ledger::NodeRole::kEdge || n.record.endpoint.empty()) continue;
      auto it = edges_.find(n.record.key);
      if (n.reputation.blacklisted) {
        if (it != edges_.end()) it->second.dropped = true;
        continue;
      }
      if (it != edges_.end()) continue;
      EdgeConn conn;
      conn.name = n.record.name;
      conn.endpoint = n.record.endpoint;
      auto channel = net::MakeChannel(conn.endpoint, options_.transport);
      if (!channel.ok()) {
        TM_WARN("edge {} ({}): {}", conn.name, conn.endpoint, channel.status().ToString());
        continue;
      }
      conn.stub = v1::EdgeService::NewStub(*channel);
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
      v1::HealthResponse health;
      grpc::Status s = conn.stub->Health(&ctx, v1::HealthRequest(), &health);
      if (!s.ok() || !health.serving()) {
        TM_INFO("edge {} ({}) is not serving, not placing experts on it: {}", conn.name,
                conn.endpoint, s.ok() ? health.detail() : s.error_message());
        conn.dropped = true;
      }
      edges_.emplace(n.record.key, std::move(conn));
    }
    return Status::Ok();
  }

  size_t ServingEdges() const {
    size_t n = 0;
    for (const auto& [k, e] : edges_) n += e.dropped ? 0 : 1;
    return n;
  }

  // Tops slot i's holders up to `target` (R by default) from the serving edges holding the
  // fewest experts, skipping `avoid`. True when holders were added. Caller holds mu_.
  bool FillHolders(uint32_t i, const std::set<crypto::PublicKey>& avoid, size_t target = 0) {
    Slot& slot = slots_[i];
    std::erase_if(slot.holders, [&](const auto& k) { return edges_[k].dropped; });
    if (target == 0) target = options_.spec.replication;
    bool added = false;
    while (slot.holders.size() < target) {
      std::map<crypto::PublicKey, size_t> load;
      for (const auto& [k, e] : edges_) {
        if (!e.dropped && !avoid.count(k) &&
            std::find(slot.holders.begin(), slot.holders.end(), k) == slot.holders.end()) {
          load[k] = 0;
        }
      }
      if (load.empty()) break;
      for (const Slot& s : slots_) {
        for (const auto& h : s.holders) {
          if (load.count(h)) ++load[h];
        }
      }
      // Fewest experts first; among equals, the edge after this expert's index (spreads the
      // first placement round robin).
      std::vector<std::pair<size_t, crypto::PublicKey>> order;
      for (const auto& [k, n] : load) order.push_back({n, k});
      std::stable_sort(order.begin(), order.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; });
      slot.holders.push_back(order.front().second);
      added = true;
    }
    return added;
  }

  Status RecordPlacement(const std::vector<uint32_t>& indices) {
    ledger::JobRecordBody body;
    body.job = options_.job;
    body.event = ledger::JobEvent::kPlacement;
    std::vector<ledger::PlacementEntry> all;
    {
      std::lock_guard lock(mu_);
      all = PlacementLocked();
    }
    for (const auto& e : all) {
      if (!e.edges.empty() &&
          (indices.empty() || std::find(indices.begin(), indices.end(), e.index) != indices.end())) {
        body.placement.push_back(e);
      }
    }
    if (options_.on_placement) options_.on_placement(all);
    if (body.placement.empty()) return Status::Ok();
    ledger::Tx tx = ledger::MakeTx(chain_->genesis().chain_id, ledger::TxType::kJobRecord, *key_,
                                   ledger::FreshNonce(), body.Encode());
    auto submitted = chain_->Submit(tx.Encode(), /*wait=*/true);
    if (!submitted.ok()) return submitted.status().WithContext("recording the placement");
    TM_INFO("job {}: placement of {} expert(s) recorded at block {}", options_.job,
            body.placement.size(), submitted->height);
    return Status::Ok();
  }

  void Drop(const crypto::PublicKey& edge, const std::string& why) {
    std::lock_guard lock(mu_);
    auto it = edges_.find(edge);
    if (it == edges_.end() || it->second.dropped) return;
    it->second.dropped = true;
    ++stats_.dropped_edges;
    TM_WARN("job {}: dropping edge {} ({}): {}", options_.job, it->second.name, Hex8(edge), why);
    for (uint32_t i = 0; i < slots_.size(); ++i) {
      auto& h = slots_[i].holders;
      if (std::find(h.begin(), h.end(), edge) == h.end()) continue;
      FillHolders(i, {});
      pending_placement_.push_back(i);
    }
  }

  // Reports a commitment that does not match the call it answers (docs/formats/tx.md, type 21).
  void Report(const crypto::PublicKey& edge, const std::string& commitment,
              const std::string& expert_cid, const std::string& input_cid) {
    ledger::ReportCommitment report;
    report.edge = edge;
    report.commitment.assign(commitment.begin(), commitment.end());
    report.expert_cid = expert_cid;
    report.input_cid = input_cid;
    ledger::Tx tx = ledger::MakeTx(chain_->genesis().chain_id, ledger::TxType::kReportCommitment,
                                   *key_, ledger::FreshNonce(), report.Encode());
    auto s = chain_->Submit(tx.Encode(), /*wait=*/true);
    std::lock_guard lock(mu_);
    if (s.ok()) ++stats_.reported;
    TM_WARN("job {}: reported edge {}'s commitment: {}", options_.job, Hex8(edge),
            s.ok() ? "recorded" : s.status().ToString());
  }

  // Why `response` is not a faithful answer to the call; empty when it is. `reportable` is set
  // for what the chain can judge from the commitment alone.
  std::string CheckCommitment(const crypto::PublicKey& edge, Kind kind, uint64_t step,
                              const std::string& cid, const std::string& input_cid,
                              const std::string& grad_cid, const v1::CallResponse& response,
                              int64_t rows, uint64_t* nonce, bool* reportable) {
    *reportable = true;
    const ByteSpan raw(reinterpret_cast<const uint8_t*>(response.result_tx().data()),
                       response.result_tx().size());
    auto tx = ledger::Tx::Decode(raw, chain_->genesis().params.tx_bytes_max);
    if (!tx.ok()) return "the commitment does not decode: " + tx.status().message();
    if (tx->type != static_cast<uint8_t>(ledger::TxType::kExpertResult)) {
      return "the commitment is not an expert result";
    }
    if (tx->signer != edge) return "the commitment is signed by another key";
    if (!tx->VerifySignature(chain_->genesis().chain_id).ok()) return "the commitment's signature does not verify";
    auto body = ledger::ExpertResultBody::Decode(tx->body);
    if (!body.ok()) return "the commitment's body does not decode: " + body.status().message();
    if (body->expert_cid != cid || body->input_cid != input_cid) {
      return "the commitment is for another call";
    }
    *reportable = false;
    const ledger::CallKind want =
        kind == Kind::kForward ? ledger::CallKind::kForward : ledger::CallKind::kBackward;
    if (body->kind != want || body->job != options_.job || body->step != step ||
        body->grad_output_cid != grad_cid || body->rows != static_cast<uint64_t>(rows)) {
      return "the commitment names another kind, job, step, gradient or row count";
    }
    const ByteSpan out(reinterpret_cast<const uint8_t*>(response.output().data()),
                       response.output().size());
    if (crypto::ComputeCid(out).ToString() != body->output_cid) {
      return "the output does not hash to the committed output CID";
    }
    *nonce = tx->nonce;
    return "";
  }

  std::optional<edge::HostTensor> Call(Kind kind, uint32_t index, uint64_t step,
                                       const edge::HostTensor& input, const edge::HostTensor* grad) {
    auto input_file = edge::WriteActivations(input);
    if (!input_file.ok()) return std::nullopt;
    const std::string input_cid = crypto::ComputeCid(*input_file).ToString();
    Bytes grad_file;
    std::string grad_cid;
    if (grad != nullptr) {
      auto g = edge::WriteActivations(*grad);
      if (!g.ok()) return std::nullopt;
      grad_file = std::move(g).value();
      grad_cid = crypto::ComputeCid(grad_file).ToString();
    }
    std::set<crypto::PublicKey> tried;
    const size_t attempts_max = options_.spec.replication + 3;
    for (size_t attempt = 0; attempt < attempts_max; ++attempt) {
      crypto::PublicKey edge;
      std::string cid;
      v1::EdgeService::Stub* stub = nullptr;
      {
        std::lock_guard lock(mu_);
        Slot& slot = slots_[index];
        std::vector<crypto::PublicKey> usable;
        for (const auto& h : slot.holders) {
          if (!edges_[h].dropped && !tried.count(h)) usable.push_back(h);
        }
        if (usable.empty()) {
          // Every holder failed this call: place the expert on one more edge for it.
          std::erase_if(slot.holders, [&](const auto& k) { return edges_[k].dropped; });
          const size_t before = slot.holders.size();
          FillHolders(index, tried, before + 1);
          if (slot.holders.size() == before) break;
          pending_placement_.push_back(index);
          usable.push_back(slot.holders.back());
        }
        edge = usable[slot.next++ % usable.size()];
        cid = slot.cid;
        stub = edges_[edge].stub.get();
        if (attempt > 0) ++stats_.rerouted;
      }
      tried.insert(edge);
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(options_.call_timeout_ms));
      v1::CallResponse response;
      grpc::Status status;
      if (kind == Kind::kForward) {
        v1::ForwardRequest req;
        req.set_job(options_.job);
        req.set_step(step);
        req.set_expert_cid(cid);
        req.set_input(input_file->data(), input_file->size());
        status = stub->Forward(&ctx, req, &response);
      } else {
        v1::BackwardRequest req;
        req.set_job(options_.job);
        req.set_step(step);
        req.set_expert_cid(cid);
        req.set_input(input_file->data(), input_file->size());
        req.set_grad_output(grad_file.data(), grad_file.size());
        status = stub->Backward(&ctx, req, &response);
      }
      if (!status.ok()) {
        bool drop = false;
        {
          std::lock_guard lock(mu_);
          drop = ++edges_[edge].failures >= kFailuresToDrop ||
                 status.error_code() == grpc::StatusCode::PERMISSION_DENIED;
        }
        TM_WARN("job {}: expert {} on edge {}: {}", options_.job, index, Hex8(edge),
                net::FromGrpcStatus(status).ToString());
        if (drop) Drop(edge, "calls fail: " + status.error_message());
        continue;
      }
      uint64_t nonce = 0;
      bool reportable = false;
      std::string bad = CheckCommitment(edge, kind, step, cid, input_cid, grad_cid, response,
                                        input.rows, &nonce, &reportable);
      std::optional<edge::HostTensor> output;
      if (bad.empty()) {
        const ByteSpan out(reinterpret_cast<const uint8_t*>(response.output().data()),
                           response.output().size());
        auto parsed = edge::ReadActivations(out, options_.spec.d_model, input.rows);
        if (!parsed.ok() || parsed->rows != input.rows) {
          bad = "its output does not parse as " + std::to_string(input.rows) + " rows";
        } else {
          auto f32 = edge::ToFloats(parsed->dtype, parsed->data);
          edge::HostTensor t;
          t.rows = parsed->rows;
          t.cols = parsed->cols;
          t.data = edge::FromFloats(edge::DType::kF32, *f32);
          output = std::move(t);
        }
      }
      if (!bad.empty()) {
        if (reportable) Report(edge, response.result_tx(), cid, input_cid);
        Drop(edge, bad);
        continue;
      }
      {
        std::lock_guard lock(mu_);
        edges_[edge].failures = 0;
      }
      std::lock_guard lock(mu_);
      // verify = sync: the verdict is waited for in Settle, for all of a step's results at once.
      if (options_.spec.verify == VerifyMode::kSync) unsettled_.push_back({edge, nonce});
      ++stats_.calls;
      if (kind == Kind::kBackward) slots_[index].sources[edge].push_back(nonce);
      return output;
    }
    std::lock_guard lock(mu_);
    ++stats_.unanswered;
    return std::nullopt;
  }

  Result<std::string> UpdateOne(const crypto::PublicKey& edge, const std::string& parent,
                                const std::vector<uint64_t>& sources, uint64_t step) {
    v1::EdgeService::Stub* stub;
    {
      std::lock_guard lock(mu_);
      stub = edges_[edge].stub.get();
    }
    v1::UpdateRequest req;
    req.set_job(options_.job);
    req.set_step(step);
    req.set_parent_cid(parent);
    for (uint64_t n : sources) req.add_sources(n);
    v1::OptimizerParams* opt = req.mutable_optimizer();
    opt->set_kind(options_.spec.optimizer == Optimizer::kAdam ? "adam" : "sgd");
    opt->set_lr(options_.spec.lr);
    opt->set_momentum(options_.spec.momentum);
    opt->set_weight_decay(options_.spec.weight_decay);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(options_.call_timeout_ms + options_.commit_timeout_ms));
    v1::UpdateResponse response;
    grpc::Status status = stub->Update(&ctx, req, &response);
    if (!status.ok()) return net::FromGrpcStatus(status).WithContext("EdgeService.Update");
    if (response.update_id().size() != 32) return Status::DataLoss("the edge sent no update id");
    ledger::TxId id{};
    std::copy(response.update_id().begin(), response.update_id().end(), id.begin());
    // The new version is usable once its update is on the chain (the child is published then,
    // and its file is in the store: the edge uploads before it submits).
    // The chain refuses an update whose child is published already: the same step from the same
    // start computed by an earlier job (training is deterministic). That child is as good.
    const std::string child_key = "expert/" + response.child_cid();
    const auto deadline = Clock::now() + std::chrono::milliseconds(options_.commit_timeout_ms);
    for (int poll = 1;; ++poll) {
      auto tx = chain_->GetTx(id);
      if (tx.ok()) break;
      if (tx.status().code() != StatusCode::kNotFound) {
        return tx.status().WithContext("waiting for the update to commit");
      }
      if (poll % 40 == 0) {
        // A blacklisted edge's update never commits: do not wait the whole timeout for it.
        auto node = chain_->GetNode(edge);
        if (node.ok() && node->has_value() && (*node)->reputation.blacklisted) {
          return Status::FailedPrecondition("edge " + Hex8(edge) +
                                            " is blacklisted: its update will not commit");
        }
      }
      if (poll % 8 == 0) {
        auto page = chain_->ScanState(child_key, "", 1);
        if (page.ok() && !page->entries.empty() && page->entries[0].first == child_key) {
          TM_DEBUG("job {}: the child {} of step {} is published; continuing on it", options_.job,
                   response.child_cid(), step);
          break;
        }
      }
      if (Clock::now() > deadline) {
        return Status::DeadlineExceeded("the update is not on the chain after " +
                                        std::to_string(options_.commit_timeout_ms) + " ms");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(kCommitPollMs));
    }
    return response.child_cid();
  }

  EdgeExpertsOptions options_;
  chain::ChainClient* chain_;
  const crypto::PrivateKey* key_;
  mutable std::mutex mu_;
  std::map<crypto::PublicKey, EdgeConn> edges_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> pending_placement_;
  int all_failed_steps_ = 0;  // consecutive steps whose expert updates all failed
  std::vector<std::pair<crypto::PublicKey, uint64_t>> unsettled_;  // results awaiting a verdict
  ExpertCallStats stats_;
  std::unique_ptr<VerdictTracker> tracker_;
};

EdgeExperts::EdgeExperts(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EdgeExperts::~EdgeExperts() = default;

Result<std::unique_ptr<EdgeExperts>> EdgeExperts::Create(
    EdgeExpertsOptions options, chain::ChainClient* chain, const crypto::PrivateKey* key,
    std::vector<std::string> cids, std::vector<ledger::PlacementEntry> placement) {
  auto impl = std::make_unique<Impl>(std::move(options), chain, key);
  TRUSTMOE_RETURN_IF_ERROR(impl->Init(std::move(cids), std::move(placement)));
  return std::unique_ptr<EdgeExperts>(new EdgeExperts(std::move(impl)));
}

std::vector<std::optional<edge::HostTensor>> EdgeExperts::Forward(
    uint32_t layer, uint64_t step, const std::vector<ExpertRows>& routed) {
  return impl_->Run(Kind::kForward, layer, step, routed, nullptr);
}

std::vector<std::optional<edge::HostTensor>> EdgeExperts::Backward(
    uint32_t layer, uint64_t step, const std::vector<ExpertRows>& routed,
    const std::vector<std::optional<edge::HostTensor>>& grad_outputs) {
  return impl_->Run(Kind::kBackward, layer, step, routed, &grad_outputs);
}

Status EdgeExperts::Settle() { return impl_->Settle(); }
Status EdgeExperts::Update(uint64_t step) { return impl_->Update(step); }
std::vector<std::string> EdgeExperts::ExpertCids() const { return impl_->ExpertCids(); }
ExpertCallStats EdgeExperts::Stats() const { return impl_->Stats(); }
std::vector<ledger::PlacementEntry> EdgeExperts::Placement() const { return impl_->Placement(); }

}  // namespace trustmoe::gate
