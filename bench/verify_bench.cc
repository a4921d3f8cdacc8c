// verify_bench: what verification costs (docs/verification.md, docs/results/verify_bench.md).
//
//   verify_bench [--d-model N] [--d-ff N] [--rows N] [--reps N] [--results N] [--rate R]
//                [--section cost|latency|all]
//
// cost     One result of --rows rows for a swiglu --d-model -> --d-ff expert. The bound is
//          the edge's own compute for that result (ExpertRuntime::Forward of every row, on
//          CUDA in bf16 when there is a GPU, else on the CPU in f32); the measure is one
//          validator's whole check of it (ResultVerifier::Verify: parse the tensors, sample 5 %
//          of the rows, re-compute them in f32 on the CPU, compare) from blobs in memory.
//          Printed: verify / edge, and verify / CPU-f32 edge (the same hardware on both sides).
// latency  Four trustmoe-validator processes that verify against a trustmoe-store. --results
//          results (64 rows, a small expert) are submitted at --rate per second by test code
//          acting as an edge (honest outputs, uploaded, then the signed commitment). For each:
//          submission -> commit (the bound: one consensus round) and submission -> final
//          verdict (ordering, four checks, votes, the vote quorum's commit). Printed: p50 and
//          p99 of both and their ratio.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/loopback_daemons.h"
#include "chain/ledger/result.h"
#include "chain/ledger/tx.h"
#include "chain/verify/sampling.h"
#include "chain/verify/verifier.h"
#include "crypto/cid.h"
#include "edge/numeric.h"
#include "edge/runtime.h"

namespace trustmoe::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int64_t d_model = 1024;
  int64_t d_ff = 4096;
  int64_t rows = 1024;
  int reps = 5;
  int results = 200;
  double rate = 20;
  std::string section = "all";
};

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

edge::HostTensor Random(int64_t rows, int64_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(rows * cols));
  for (float& f : v) f = normal(rng);
  return {edge::DType::kF32, rows, cols, edge::FromFloats(edge::DType::kF32, v)};
}

class MemoryBlobs : public verify::BlobSource {
 public:
  void Add(const Bytes& b) { blobs_[crypto::ComputeCid(b).ToString()] = b; }
  Result<Bytes> Get(const crypto::Cid& cid, uint64_t bytes_max) override {
    auto it = blobs_.find(cid.ToString());
    if (it == blobs_.end()) return Status::NotFound("no blob");
    if (it->second.size() > bytes_max) return Status::FailedPrecondition("over the limit");
    return it->second;
  }

 private:
  std::map<std::string, Bytes> blobs_;
};

// Median milliseconds of `reps` runs of `fn` after one warm-up run.
template <typename Fn>
Result<double> MedianMs(int reps, Fn fn) {
  TRUSTMOE_RETURN_IF_ERROR(fn(-1));
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    auto start = Clock::now();
    TRUSTMOE_RETURN_IF_ERROR(fn(i));
    ms.push_back(Ms(Clock::now() - start));
  }
  return Percentile(ms, 0.5);
}

Status CostSection(const Options& o) {
  const edge::ExpertSpec spec{std::string(edge::kArchSwiglu), o.d_model, o.d_ff, edge::DType::kF32};
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes expert, edge::NewExpertFile(spec, 1));
  const std::string cid = crypto::ComputeCid(expert).ToString();
  edge::HostTensor x = Random(o.rows, o.d_model, 2);

  // The validator: f32 on the CPU.
  edge::RuntimeOptions cpu_options;
  cpu_options.device_bytes_max = 64ull << 30;
  TRUSTMOE_ASSIGN_OR_RETURN(auto cpu, edge::ExpertRuntime::Create(cpu_options));
  TRUSTMOE_RETURN_IF_ERROR(cpu->Load(cid, expert));
  TRUSTMOE_ASSIGN_OR_RETURN(edge::HostTensor y, cpu->Forward(cid, x));

  // The edge: CUDA bf16 when present.
  const bool gpu = edge::ExpertRuntime::CudaAvailable();
  std::unique_ptr<edge::ExpertRuntime> edge_rt;
  if (gpu) {
    edge::RuntimeOptions gpu_options;
    gpu_options.device = "cuda:0";
    gpu_options.compute_dtype = edge::DType::kBF16;
    gpu_options.device_bytes_max = 64ull << 30;
    TRUSTMOE_ASSIGN_OR_RETURN(edge_rt, edge::ExpertRuntime::Create(gpu_options));
    TRUSTMOE_RETURN_IF_ERROR(edge_rt->Load(cid, expert));
  }

  MemoryBlobs blobs;
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes x_file, edge::WriteActivations(x));
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes y_file, edge::WriteActivations(y));
  blobs.Add(expert);
  blobs.Add(x_file);
  blobs.Add(y_file);
  ledger::ChainParams params;  // the defaults: max(16 rows, 5 %)
  verify::VerifierOptions vopts;
  vopts.expert_bytes_max = 64ull << 30;
  vopts.tensor_bytes_max = 64ull << 30;
  verify::ResultVerifier verifier(params, cpu.get(), &blobs, vopts);
  ledger::ResultRecord record;
  record.edge = crypto::PrivateKey::Generate().value().public_key();
  record.body.kind = ledger::CallKind::kForward;
  record.body.job = "bench";
  record.body.expert_cid = cid;
  record.body.input_cid = crypto::ComputeCid(x_file).ToString();
  record.body.output_cid = crypto::ComputeCid(y_file).ToString();
  record.body.rows = static_cast<uint64_t>(o.rows);

  int64_t sampled = 0;
  TRUSTMOE_ASSIGN_OR_RETURN(double verify_ms, MedianMs(o.reps, [&](int i) -> Status {
    record.nonce = static_cast<uint64_t>(i + 2);  // another sample each run
    crypto::Digest digest{};
    digest[0] = static_cast<uint8_t>(i + 2);
    TRUSTMOE_ASSIGN_OR_RETURN(verify::Outcome out, verifier.Verify(record, digest));
    if (out.verdict != ledger::Verdict::kAccepted) {
      return Status::Internal("honest result rejected: " + out.detail);
    }
    sampled = out.rows_checked;
    return Status::Ok();
  }));
  TRUSTMOE_ASSIGN_OR_RETURN(double cpu_edge_ms, MedianMs(o.reps, [&](int) -> Status {
    return cpu->Forward(cid, x).status();
  }));
  std::printf("cost: swiglu %lld -> %lld -> %lld, %lld rows, sample %lld rows (max(16, 5 %%))\n",
              static_cast<long long>(o.d_model), static_cast<long long>(o.d_ff),
              static_cast<long long>(o.d_model), static_cast<long long>(o.rows),
              static_cast<long long>(sampled));
  std::printf("  validator check (cpu f32, parse + sample + re-compute + compare): %9.2f ms\n",
              verify_ms);
  std::printf("  edge compute, cpu f32 (bound, same hardware):                     %9.2f ms\n",
              cpu_edge_ms);
  std::printf("  verify / edge(cpu f32) = %.3f   (sample fraction %.3f)\n", verify_ms / cpu_edge_ms,
              static_cast<double>(sampled) / static_cast<double>(o.rows));
  if (gpu) {
    TRUSTMOE_ASSIGN_OR_RETURN(double gpu_ms, MedianMs(o.reps, [&](int) -> Status {
      return edge_rt->Forward(cid, x).status();
    }));
    std::printf("  edge compute, %s bf16 (bound):                       %9.2f ms\n",
                edge_rt->DeviceDescription().c_str(), gpu_ms);
    std::printf("  verify(cpu) / edge(gpu) = %.2f\n", verify_ms / gpu_ms);
  }
  return Status::Ok();
}

Status LatencySection(const Options& o) {
  std::printf("latency: starting 4 verifying validators and a store...\n");
  std::fflush(stdout);
  TRUSTMOE_ASSIGN_OR_RETURN(crypto::PrivateKey edge_key, crypto::PrivateKey::Generate());
  TRUSTMOE_ASSIGN_OR_RETURN(
      auto daemons, LoopbackDaemons::Start(DefaultDaemonBinaries(), {edge_key.public_key()}, true));
  TRUSTMOE_ASSIGN_OR_RETURN(auto chain, daemons->ChainClient());
  TRUSTMOE_ASSIGN_OR_RETURN(auto store, daemons->StoreClient());
  TRUSTMOE_RETURN_IF_ERROR(daemons->RegisterEdge(edge_key.public_key(), "bench-edge", ""));
  const edge::ExpertSpec spec{std::string(edge::kArchSwiglu), 256, 1024, edge::DType::kF32};
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes expert, edge::NewExpertFile(spec, 1));
  TRUSTMOE_ASSIGN_OR_RETURN(storage::StoredBlob blob, store->Put(expert, true));
  const std::string cid = blob.cid.ToString();
  TRUSTMOE_RETURN_IF_ERROR(daemons->PublishExpert(cid, spec.arch, expert.size()));
  TRUSTMOE_ASSIGN_OR_RETURN(auto cpu, edge::ExpertRuntime::Create(edge::RuntimeOptions{}));
  TRUSTMOE_RETURN_IF_ERROR(cpu->Load(cid, expert));

  // Prepared ahead: tensors uploaded, commitments signed.
  struct Item {
    Bytes tx;
    uint64_t nonce = 0;
    Clock::time_point submitted, committed, verdict;
    bool has_commit = false, has_verdict = false;
    bool accepted = false;
  };
  std::vector<Item> items(static_cast<size_t>(o.results));
  for (int i = 0; i < o.results; ++i) {
    edge::HostTensor x = Random(64, 256, 100 + static_cast<uint64_t>(i));
    TRUSTMOE_ASSIGN_OR_RETURN(edge::HostTensor y, cpu->Forward(cid, x));
    TRUSTMOE_ASSIGN_OR_RETURN(Bytes xf, edge::WriteActivations(x));
    TRUSTMOE_ASSIGN_OR_RETURN(Bytes yf, edge::WriteActivations(y));
    TRUSTMOE_RETURN_IF_ERROR(store->Put(xf, true).status());
    TRUSTMOE_RETURN_IF_ERROR(store->Put(yf, true).status());
    ledger::ExpertResultBody body{ledger::CallKind::kForward, "bench", static_cast<uint64_t>(i),
                                  cid, crypto::ComputeCid(xf).ToString(), "",
                                  crypto::ComputeCid(yf).ToString(), 64};
    items[i].nonce = ledger::FreshNonce();
    items[i].tx = ledger::MakeTx(daemons->genesis().chain_id, ledger::TxType::kExpertResult,
                                 edge_key, items[i].nonce, body.Encode())
                      .Encode();
  }
  std::printf("latency: %d results prepared; submitting at %.0f/s\n", o.results, o.rate);
  std::fflush(stdout);

  std::mutex mu;
  std::atomic<bool> done{false};
  // Watches the results' state for verdicts.
  std::thread watcher([&] {
    auto client = daemons->ChainClient();
    if (!client.ok()) return;
    const std::string prefix = "result/" + edge_key.public_key().Hex() + "/";
    std::map<uint64_t, size_t> by_nonce;
    for (size_t i = 0; i < items.size(); ++i) by_nonce[items[i].nonce] = i;
    while (!done) {
      std::string after;
      while (true) {
        auto page = (*client)->ScanState(prefix, after, 1000);
        if (!page.ok() || page->entries.empty()) break;
        const auto now = Clock::now();
        for (const auto& [key, value] : page->entries) {
          after = key;
          auto record = ledger::ResultRecord::Decode(value);
          if (!record.ok() || record->status == ledger::ResultStatus::kPending) continue;
          auto it = by_nonce.find(record->nonce);
          if (it == by_nonce.end()) continue;
          std::lock_guard lock(mu);
          Item& item = items[it->second];
          if (!item.has_verdict) {
            item.has_verdict = true;
            item.verdict = now;
            item.accepted = record->status == ledger::ResultStatus::kAccepted;
          }
        }
        if (page->entries.size() < 1000) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });

  std::vector<std::thread> submitters;
  const auto start = Clock::now();
  for (int i = 0; i < o.results; ++i) {
    std::this_thread::sleep_until(start + std::chrono::microseconds(
                                              static_cast<int64_t>(1e6 * i / o.rate)));
    submitters.emplace_back([&, i] {
      auto client = daemons->ChainClient();
      if (!client.ok()) return;
      {
        std::lock_guard lock(mu);
        items[i].submitted = Clock::now();
      }
      auto r = (*client)->Submit(items[i].tx, true);
      std::lock_guard lock(mu);
      if (r.ok()) {
        items[i].has_commit = true;
        items[i].committed = Clock::now();
      }
    });
  }
  for (auto& t : submitters) t.join();
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  while (Clock::now() < deadline) {
    size_t n = 0;
    {
      std::lock_guard lock(mu);
      for (const Item& it : items) n += it.has_verdict ? 1 : 0;
    }
    if (n == items.size()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  done = true;
  watcher.join();

  std::vector<double> commit_ms, verdict_ms;
  int accepted = 0, missing = 0;
  for (const Item& it : items) {
    if (it.has_commit) commit_ms.push_back(Ms(it.committed - it.submitted));
    if (it.has_verdict) {
      verdict_ms.push_back(Ms(it.verdict - it.submitted));
      accepted += it.accepted ? 1 : 0;
    } else {
      ++missing;
    }
  }
  std::printf("latency: %d results, %d accepted, %d without a verdict after 120 s\n", o.results,
              accepted, missing);
  std::printf("  submission -> commit  (bound): p50 %8.1f ms  p99 %8.1f ms\n",
              Percentile(commit_ms, 0.5), Percentile(commit_ms, 0.99));
  std::printf("  submission -> verdict        : p50 %8.1f ms  p99 %8.1f ms\n",
              Percentile(verdict_ms, 0.5), Percentile(verdict_ms, 0.99));
  std::printf("  verdict / commit = %.2f (p50), %.2f (p99)\n",
              Percentile(verdict_ms, 0.5) / Percentile(commit_ms, 0.5),
              Percentile(verdict_ms, 0.99) / Percentile(commit_ms, 0.99));
  const int bad = daemons->Stop();
  if (bad != 0) std::printf("  (%d daemon(s) did not stop cleanly)\n", bad);
  if (missing > 0 || accepted != o.results) {
    return Status::Internal("not every honest result was ACCEPTED");
  }
  return Status::Ok();
}

int Main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "verify_bench: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--d-model") {
      o.d_model = std::atoll(next());
    } else if (arg == "--d-ff") {
      o.d_ff = std::atoll(next());
    } else if (arg == "--rows") {
      o.rows = std::atoll(next());
    } else if (arg == "--reps") {
      o.reps = std::atoi(next());
    } else if (arg == "--results") {
      o.results = std::atoi(next());
    } else if (arg == "--rate") {
      o.rate = std::atof(next());
    } else if (arg == "--section") {
      o.section = next();
    } else {
      std::fprintf(stderr,
                   "usage: verify_bench [--d-model N] [--d-ff N] [--rows N] [--reps N] "
                   "[--results N] [--rate R] [--section cost|latency|all]\n");
      return 2;
    }
  }
  if (o.d_model < 1 || o.d_ff < 1 || o.rows < 1 || o.reps < 1 || o.results < 1 || o.rate <= 0 ||
      (o.section != "cost" && o.section != "latency" && o.section != "all")) {
    std::fprintf(stderr, "verify_bench: every number must be positive; --section cost|latency|all\n");
    return 2;
  }
  if (o.section != "latency") {
    if (Status s = CostSection(o); !s.ok()) {
      std::fprintf(stderr, "verify_bench: cost: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  if (o.section != "cost") {
    if (Status s = LatencySection(o); !s.ok()) {
      std::fprintf(stderr, "verify_bench: latency: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace trustmoe::bench

int main(int argc, char** argv) { return trustmoe::bench::Main(argc, argv); }
