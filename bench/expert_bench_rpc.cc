#include "bench/expert_bench_rpc.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <latch>
#include <mutex>
#include <optional>
#include <thread>

#include "bench/loopback_daemons.h"
#include "chain/ledger/result.h"
#include "chain/ledger/tx.h"
#include "crypto/cid.h"
#include "edge/numeric.h"
#include "edge/runtime.h"
#include "net/transport.h"
#include "bench/bench_util.h"

namespace trustmoe::bench {
namespace {

using ::trustmoe::bench::Count;

using edge::DType;
using edge::HostTensor;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int kWarmupCalls = 3;
constexpr size_t kInputsMax = 8;                       // distinct inputs per point, cycled
constexpr uint64_t kInputPoolBytesMax = 512ull << 20;  // of one point's input files
// The edge's limits: rows and bytes of one request's tensor. It takes gRPC messages of twice
// that and 1 MiB (edge_main.cc); the bench's channel takes the same.
constexpr uint32_t kRowsPerRequestMax = 8192;
constexpr uint64_t kTensorBytesMax = 256ull << 20;
constexpr int kMessageBytesMax = static_cast<int>(2 * kTensorBytesMax + (1 << 20));
constexpr int64_t kCallTimeoutMs = 120000;
constexpr int64_t kInfoTimeoutMs = 10000;
constexpr auto kServingTimeout = std::chrono::seconds(60);
constexpr auto kDrainTimeout = std::chrono::seconds(600);
constexpr auto kPollInterval = std::chrono::milliseconds(20);
constexpr int64_t kHeadlineRows = 1024;
constexpr uint64_t kDrainRateEntriesMin = 10;
constexpr uint64_t kSeed = 20261125;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const size_t i = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size()))) - 1;
  return v[std::min(i, v.size() - 1)];
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

void SetDeadline(grpc::ClientContext* ctx, int64_t timeout_ms) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
}

// [rows, cols] of `dtype` with values in [-1, 1) from a splitmix64 stream seeded by `seed`.
HostTensor RandomTensor(DType dtype, int64_t rows, int64_t cols, uint64_t seed) {
  std::vector<float> values(static_cast<size_t>(rows * cols));
  uint64_t state = seed;
  for (float& v : values) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    v = static_cast<float>(static_cast<double>(z >> 11) * 0x1.0p-52 - 1.0);
  }
  return {dtype, rows, cols, edge::FromFloats(dtype, values)};
}

// The inputs of one point: the same tensors as host tensors (runtime alone) and as Forward
// requests carrying their activations files (RPC), built before timing.
struct Inputs {
  std::vector<HostTensor> tensors;
  std::vector<v1::ForwardRequest> requests;
  uint64_t file_bytes = 0;  // of one activations file
};

// Empty `requests` with `skip` set when a file exceeds the edge's tensor_bytes_max.
Result<Inputs> MakeInputs(const RpcShape& shape, const std::string& cid, int64_t rows, DType dtype,
                          std::string* skip) {
  Inputs in;
  for (size_t i = 0; i < kInputsMax; ++i) {
    HostTensor x = RandomTensor(dtype, rows, shape.d_model, kSeed + 1000 * rows + i);
    TRUSTMOE_ASSIGN_OR_RETURN(Bytes file, edge::WriteActivations(x));
    in.file_bytes = file.size();
    if (file.size() > kTensorBytesMax) {
      *skip = "input of " + std::to_string(file.size()) + " bytes > tensor_bytes_max";
      return in;
    }
    v1::ForwardRequest request;
    request.set_job("expert-bench");
    request.set_step(static_cast<uint64_t>(i));
    request.set_expert_cid(cid);
    request.set_input(file.data(), file.size());
    in.tensors.push_back(std::move(x));
    in.requests.push_back(std::move(request));
    if ((i + 1) * file.size() > kInputPoolBytesMax) break;
  }
  return in;
}

// What the section works with: the daemons, a stub to the edge, the bench's own runtime.
struct Rig {
  std::unique_ptr<LoopbackDaemons> daemons;
  crypto::PrivateKey edge_key;
  std::unique_ptr<v1::EdgeService::Stub> stub;
  std::unique_ptr<edge::ExpertRuntime> runtime;
  std::optional<Clock::time_point> first_call;

  Status Forward(const v1::ForwardRequest& request, v1::CallResponse* response) {
    if (!first_call) first_call = Clock::now();
    grpc::ClientContext ctx;
    SetDeadline(&ctx, kCallTimeoutMs);
    Status s = net::FromGrpcStatus(stub->Forward(&ctx, request, response));
    return s.WithContext("EdgeService.Forward");
  }

  Result<v1::InfoResponse> Info() {
    v1::InfoResponse info;
    grpc::ClientContext ctx;
    SetDeadline(&ctx, kInfoTimeoutMs);
    TRUSTMOE_RETURN_IF_ERROR(net::FromGrpcStatus(stub->Info(&ctx, v1::InfoRequest(), &info)));
    return info;
  }

  // `s` with the end of the edge's log, for errors that involve the edge.
  Status WithEdgeLog(const Status& s) const {
    if (s.ok() || daemons->edge() == nullptr) return s;
    return Status(s.code(),
                  s.message() + "\nthe end of trustmoe-edge's log:\n" + daemons->edge()->LogTail());
  }
};

Result<std::unique_ptr<Rig>> StartRig(const RpcOptions& o) {
  auto rig = std::make_unique<Rig>();
  TRUSTMOE_ASSIGN_OR_RETURN(rig->edge_key, crypto::PrivateKey::Generate());
  TRUSTMOE_ASSIGN_OR_RETURN(rig->daemons,
                            LoopbackDaemons::Start(o.binaries, {rig->edge_key.public_key()}));
  EdgeDaemonOptions edge;
  edge.key = rig->edge_key;
  edge.device = o.device;
  edge.dtype = Lower(edge::DTypeName(o.dtype));
  edge.rows_per_request_max = kRowsPerRequestMax;
  edge.tensor_bytes_max = kTensorBytesMax;
  TRUSTMOE_RETURN_IF_ERROR(rig->daemons->StartEdge(edge));
  TRUSTMOE_RETURN_IF_ERROR(rig->daemons->RegisterEdge(rig->edge_key.public_key(), "bench-edge",
                                                      rig->daemons->edge()->endpoint()));
  TRUSTMOE_ASSIGN_OR_RETURN(rig->stub, rig->daemons->EdgeStub(kMessageBytesMax));
  const auto deadline = Clock::now() + kServingTimeout;
  std::string detail;
  while (true) {
    auto info = rig->Info();
    if (info.ok() && info->serving()) break;
    detail = info.ok() ? info->detail() : info.status().ToString();
    if (Clock::now() >= deadline) {
      return rig->WithEdgeLog(Status::Unavailable("the edge is not serving " +
                                                  std::to_string(kServingTimeout.count()) +
                                                  " s after its registration: " + detail));
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  edge::RuntimeOptions ro;  // as the edge's (EdgeDaemonOptions)
  ro.device = o.device;
  ro.compute_dtype = o.dtype;
  ro.device_bytes_max = edge.gpu_memory_bytes_max;
  ro.batch_rows_max = edge.batch_rows_max;
  ro.batch_wait_us = edge.batch_wait_us;
  TRUSTMOE_ASSIGN_OR_RETURN(rig->runtime, edge::ExpertRuntime::Create(ro));
  return rig;
}

// ---- timing ----

// Seconds of each of `calls` sequential calls.
Result<std::vector<double>> TimeCalls(int calls, const std::function<Status(size_t)>& call) {
  std::vector<double> seconds;
  for (int i = 0; i < calls; ++i) {
    const auto start = Clock::now();
    TRUSTMOE_RETURN_IF_ERROR(call(static_cast<size_t>(i)));
    seconds.push_back(Seconds(start));
  }
  return seconds;
}

// Wall seconds of `threads` callers making `per_thread` calls each, started together.
Result<double> TimeConcurrent(int threads, int per_thread,
                              const std::function<Status(size_t)>& call) {
  std::latch start(threads + 1);
  std::mutex mu;
  Status first_error;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      start.arrive_and_wait();
      for (int k = 0; k < per_thread; ++k) {
        Status s = call(static_cast<size_t>(t * per_thread + k));
        if (!s.ok()) {
          std::lock_guard lock(mu);
          if (first_error.ok()) first_error = s;
          return;
        }
      }
    });
  }
  start.arrive_and_wait();
  const auto begin = Clock::now();
  for (std::thread& w : workers) w.join();
  const double wall = Seconds(begin);
  if (!first_error.ok()) return first_error;
  return wall;
}

// ---- one point ----

struct Point {
  int64_t rows = 0;
  std::vector<double> runtime_s, rpc_s;  // per sequential call
  double runtime_wall_s = 0, rpc_wall_s = 0;
  int64_t concurrent_calls = 0;

  double RuntimeP50() const { return Percentile(runtime_s, 0.5); }
  double RpcP50() const { return Percentile(rpc_s, 0.5); }
  double RuntimeRowsPerS() const {
    return static_cast<double>(rows * concurrent_calls) / runtime_wall_s;
  }
  double RpcRowsPerS() const { return static_cast<double>(rows * concurrent_calls) / rpc_wall_s; }
};

// (a) runtime alone and (b) Forward RPC: warm-up, then sequential calls (latency), then
// `threads` concurrent callers (throughput). `first` receives a warm-up response.
Result<Point> MeasurePoint(Rig& rig, const RpcOptions& o, const std::string& cid, const Inputs& in,
                           int64_t rows, v1::CallResponse* first) {
  const size_t n = in.requests.size();
  auto runtime_call = [&](size_t i) {
    return rig.runtime->Forward(cid, in.tensors[i % n]).status();
  };
  auto rpc_call = [&](size_t i) {
    v1::CallResponse response;
    return rig.Forward(in.requests[i % n], &response);
  };
  TRUSTMOE_RETURN_IF_ERROR(rig.Forward(in.requests[0], first));
  for (int i = 0; i < kWarmupCalls; ++i) {
    TRUSTMOE_RETURN_IF_ERROR(runtime_call(static_cast<size_t>(i)));
    TRUSTMOE_RETURN_IF_ERROR(rpc_call(static_cast<size_t>(i)));
  }
  Point p;
  p.rows = rows;
  TRUSTMOE_ASSIGN_OR_RETURN(p.runtime_s, TimeCalls(o.calls, runtime_call));
  TRUSTMOE_ASSIGN_OR_RETURN(p.rpc_s, TimeCalls(o.calls, rpc_call));
  const int per_thread = std::max(2, (o.calls + o.threads - 1) / o.threads);
  p.concurrent_calls = static_cast<int64_t>(per_thread) * o.threads;
  TRUSTMOE_ASSIGN_OR_RETURN(p.runtime_wall_s, TimeConcurrent(o.threads, per_thread, runtime_call));
  TRUSTMOE_ASSIGN_OR_RETURN(p.rpc_wall_s, TimeConcurrent(o.threads, per_thread, rpc_call));
  return p;
}

json PointJson(const Point& p, uint64_t file_bytes) {
  return {{"rows", p.rows},
          {"input_file_bytes", file_bytes},
          {"calls", p.runtime_s.size()},
          {"runtime_p50_s", p.RuntimeP50()},
          {"runtime_p90_s", Percentile(p.runtime_s, 0.9)},
          {"rpc_p50_s", p.RpcP50()},
          {"rpc_p90_s", Percentile(p.rpc_s, 0.9)},
          {"latency_ratio_rpc_over_runtime", p.RpcP50() / p.RuntimeP50()},
          {"concurrent_calls", p.concurrent_calls},
          {"runtime_rows_per_s", p.RuntimeRowsPerS()},
          {"rpc_rows_per_s", p.RpcRowsPerS()},
          {"throughput_ratio_runtime_over_rpc", p.RuntimeRowsPerS() / p.RpcRowsPerS()}};
}

// ---- the commitment ----

// Checks the signed result of one call as a gate would: the transaction decodes, is an
// ExpertResult signed by the edge's key for this chain, and commits to the expert, the input
// sent and the output received; the output also matches the runtime's on the same input.
Result<json> VerifyCommitment(Rig& rig, const RpcShape& shape, const std::string& cid,
                              const v1::ForwardRequest& request, const HostTensor& x,
                              const v1::CallResponse& response) {
  const ledger::Genesis& genesis = rig.daemons->genesis();
  TRUSTMOE_ASSIGN_OR_RETURN(ledger::Tx tx, ledger::Tx::Decode(AsBytes(response.result_tx()),
                                                              genesis.params.tx_bytes_max));
  const bool signature_ok = tx.VerifySignature(genesis.chain_id).ok() &&
                            tx.signer == rig.edge_key.public_key() &&
                            tx.type == static_cast<uint8_t>(ledger::TxType::kExpertResult);
  TRUSTMOE_ASSIGN_OR_RETURN(ledger::ExpertResultBody body,
                            ledger::ExpertResultBody::Decode(tx.body));
  const std::string output_cid = crypto::ComputeCid(AsBytes(response.output())).ToString();
  const bool output_cid_ok = body.output_cid == output_cid && response.output_cid() == output_cid;
  const bool input_cid_ok =
      body.input_cid == crypto::ComputeCid(AsBytes(request.input())).ToString();
  const pbft::TxId id = pbft::ComputeTxId(AsBytes(response.result_tx()));
  const bool body_ok = body.kind == ledger::CallKind::kForward && body.expert_cid == cid &&
                       body.rows == static_cast<uint64_t>(x.rows) &&
                       response.result_id().size() == id.size() &&
                       std::memcmp(response.result_id().data(), id.data(), id.size()) == 0;
  TRUSTMOE_ASSIGN_OR_RETURN(
      HostTensor y, edge::ReadActivations(AsBytes(response.output()), shape.d_model, x.rows));
  TRUSTMOE_ASSIGN_OR_RETURN(HostTensor reference, rig.runtime->Forward(cid, x));
  TRUSTMOE_ASSIGN_OR_RETURN(std::vector<float> got, edge::ToFloats(y.dtype, y.data));
  TRUSTMOE_ASSIGN_OR_RETURN(std::vector<float> want,
                            edge::ToFloats(reference.dtype, reference.data));
  if (got.size() != want.size()) return Status::Internal("output size differs from the runtime's");
  double diff = 0, scale = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::fabs(got[i] - want[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(want[i])));
  }
  const double rel = diff / std::max(scale, 1e-30);
  const bool ok = signature_ok && output_cid_ok && input_cid_ok && body_ok;
  return json{{"ok", ok},
              {"signature_ok", signature_ok},
              {"output_cid_ok", output_cid_ok},
              {"input_cid_ok", input_cid_ok},
              {"body_ok", body_ok},
              {"rows", x.rows},
              {"shape", shape.label},
              {"result_tx_bytes", response.result_tx().size()},
              {"output_relative_diff_vs_runtime", rel}};
}

void PrintCommitment(const json& c) {
  auto word = [&](const char* key) { return c[key].get<bool>() ? "ok" : "BAD"; };
  std::printf(
      "  commitment of %s (%lld rows): signature %s, output_cid %s, input_cid %s, body %s; "
      "output vs runtime alone: max |diff| %.2e of max |y|\n",
      c["shape"].get<std::string>().c_str(), static_cast<long long>(c["rows"].get<int64_t>()),
      word("signature_ok"), word("output_cid_ok"), word("input_cid_ok"), word("body_ok"),
      c["output_relative_diff_vs_runtime"].get<double>());
}

// ---- per shape ----

struct Headline {
  std::string label;
  bool mixtral = false;
  double latency_ratio = 0;
  double throughput_ratio = 0;
};

void PrintHeader() {
  std::printf("%-26s %-4s %5s | %10s %10s %7s | %10s %10s %7s\n", "shape", "", "rows", "rt p50 ms",
              "rpc p50 ms", "rpc/rt", "rt rows/s", "rpc rows/s", "rt/rpc");
}

Result<json> MeasureShape(Rig& rig, const RpcOptions& o, const RpcShape& shape,
                          storage::StoreClient& store, std::optional<Headline>* headline) {
  const Bytes& file = o.expert_file(shape);
  TRUSTMOE_ASSIGN_OR_RETURN(storage::StoredBlob blob, store.Put(file, /*pin=*/true));
  const std::string cid = blob.cid.ToString();
  TRUSTMOE_RETURN_IF_ERROR(rig.daemons->PublishExpert(cid, shape.arch, file.size()));
  TRUSTMOE_RETURN_IF_ERROR(rig.runtime->Load(cid, file));
  const std::string dtype(edge::DTypeName(o.dtype));
  json rows_json = json::array();
  json commitment;
  for (int64_t rows : o.rows) {
    std::string skip;
    if (rows > kRowsPerRequestMax) skip = "rows > rows_per_request_max";
    Inputs in;
    if (skip.empty()) {
      TRUSTMOE_ASSIGN_OR_RETURN(in, MakeInputs(shape, cid, rows, o.dtype, &skip));
    }
    if (!skip.empty()) {
      std::printf("%-26s %-4s %5lld | skipped: %s\n", shape.label.c_str(), dtype.c_str(),
                  static_cast<long long>(rows), skip.c_str());
      rows_json.push_back({{"rows", rows}, {"skipped", skip}});
      continue;
    }
    v1::CallResponse first;
    auto point = MeasurePoint(rig, o, cid, in, rows, &first);
    if (!point.ok()) return rig.WithEdgeLog(point.status());
    if (commitment.is_null()) {
      TRUSTMOE_ASSIGN_OR_RETURN(
          commitment, VerifyCommitment(rig, shape, cid, in.requests[0], in.tensors[0], first));
    }
    const Point& p = *point;
    const double latency_ratio = p.RpcP50() / p.RuntimeP50();
    const double throughput_ratio = p.RuntimeRowsPerS() / p.RpcRowsPerS();
    std::printf("%-26s %-4s %5lld | %10.3f %10.3f %6.2fx | %10s %10s %6.2fx\n", shape.label.c_str(),
                dtype.c_str(), static_cast<long long>(rows), p.RuntimeP50() * 1e3, p.RpcP50() * 1e3,
                latency_ratio, Count(p.RuntimeRowsPerS()).c_str(), Count(p.RpcRowsPerS()).c_str(),
                throughput_ratio);
    std::fflush(stdout);
    rows_json.push_back(PointJson(p, in.file_bytes));
    // The first shape measured at kHeadlineRows, or the Mixtral-shaped one when there is one.
    const bool mixtral = shape.group == "mixtral";
    if (rows == kHeadlineRows && (!*headline || (mixtral && !(*headline)->mixtral))) {
      *headline = Headline{shape.group + " " + shape.label + " " + Lower(dtype), mixtral,
                           latency_ratio, throughput_ratio};
    }
  }
  if (!commitment.is_null()) PrintCommitment(commitment);
  return json{{"shape", shape.label},     {"group", shape.group}, {"arch", shape.arch},
              {"d_model", shape.d_model}, {"d_ff", shape.d_ff},   {"expert_cid", cid},
              {"commitment", commitment}, {"rows", rows_json}};
}

// ---- the outbox ----

// Polls the edge's outbox until it is empty: how many results waited when the calls ended and
// how long the store uploads and chain commits took to absorb them.
Result<json> DrainOutbox(Rig& rig) {
  const auto calls_done = Clock::now();
  TRUSTMOE_ASSIGN_OR_RETURN(v1::InfoResponse info, rig.Info());
  const uint64_t depth_at_end = info.outbox_depth();
  const uint64_t results = info.requests();
  uint64_t depth = depth_at_end;
  while (depth > 0 && Clock::now() < calls_done + kDrainTimeout) {
    std::this_thread::sleep_for(kPollInterval);
    TRUSTMOE_ASSIGN_OR_RETURN(info, rig.Info());
    depth = info.outbox_depth();
  }
  const double drain_s = Seconds(calls_done);
  const double since_first_s =
      rig.first_call ? std::chrono::duration<double>(Clock::now() - *rig.first_call).count() : 0;
  const bool drained = depth == 0;
  const double drain_rate = static_cast<double>(depth_at_end - depth) / drain_s;
  const double overall_rate =
      since_first_s > 0 ? static_cast<double>(results - depth) / since_first_s : 0;
  // A rate of a few entries says more about the polling than about the chain.
  char rate[96] = "too few to rate";
  if (depth_at_end >= kDrainRateEntriesMin) {
    std::snprintf(rate, sizeof(rate), "%.1f results/s committed", drain_rate);
  }
  std::printf(
      "outbox: %llu results answered; %llu waiting when the last call returned, %s in %.2f s "
      "(%s; each result: input and output uploaded to the store, ExpertResult committed); "
      "%.1f results/s committed since the first call\n",
      static_cast<unsigned long long>(results), static_cast<unsigned long long>(depth_at_end),
      drained ? "drained" : "NOT drained", drain_s, rate, overall_rate);
  return json{{"results", results},
              {"depth_at_end", depth_at_end},
              {"depth_after_drain", depth},
              {"drained", drained},
              {"drain_s", drain_s},
              {"drain_results_per_s", drain_rate},
              {"since_first_call_s", since_first_s},
              {"results_per_s_since_first_call", overall_rate}};
}

Result<json> Run(Rig& rig, const RpcOptions& o, double setup_s) {
  TRUSTMOE_ASSIGN_OR_RETURN(auto store, rig.daemons->StoreClient());
  TRUSTMOE_ASSIGN_OR_RETURN(v1::InfoResponse info, rig.Info());
  std::printf(
      "rpc: 4 validators, a store and an edge on loopback (up and registered in %.1f s); edge "
      "on %s %s; %d calls per latency, %d threads x %d calls per throughput\n",
      setup_s, info.device().c_str(), info.compute_dtype().c_str(), o.calls, o.threads,
      std::max(2, (o.calls + o.threads - 1) / o.threads));
  PrintHeader();
  json shapes = json::array();
  std::optional<Headline> headline;
  for (const RpcShape& shape : o.shapes) {
    TRUSTMOE_ASSIGN_OR_RETURN(json s, MeasureShape(rig, o, shape, *store, &headline));
    shapes.push_back(std::move(s));
  }
  std::printf(
      "(rt: ExpertRuntime::Forward in this process, host to host; rpc: EdgeService.Forward to the "
      "edge, activations file in, output and signed result_tx out; p50 of sequential calls; "
      "rows/s with concurrent callers; both ratios: rpc cost over runtime cost)\n");
  TRUSTMOE_ASSIGN_OR_RETURN(json outbox, DrainOutbox(rig));
  const std::string label = "ratio rpc/runtime at " + std::to_string(kHeadlineRows) + " rows";
  if (headline) {
    std::printf("%s (%s): %.2fx (p50 latency; throughput %.2fx)\n", label.c_str(),
                headline->label.c_str(), headline->latency_ratio, headline->throughput_ratio);
  } else {
    std::printf("%s: n/a (needs %lld in --rpc-rows)\n", label.c_str(),
                static_cast<long long>(kHeadlineRows));
  }
  return json{{"available", true},
              {"device", info.device()},
              {"dtype", info.compute_dtype()},
              {"validators", 4},
              {"calls", o.calls},
              {"threads", o.threads},
              {"edge_batch_wait_us", 0},
              {"setup_s", setup_s},
              {"shapes", shapes},
              {"outbox", outbox},
              {"headline",
               headline ? json{{"rows", kHeadlineRows},
                               {"shape", headline->label},
                               {"latency_ratio_rpc_over_runtime", headline->latency_ratio},
                               {"throughput_ratio_runtime_over_rpc", headline->throughput_ratio}}
                        : json(nullptr)}};
}

}  // namespace

Result<json> RunRpcSection(const RpcOptions& o) {
  TRUSTMOE_RETURN_IF_ERROR(CheckDaemonBinaries(o.binaries));
  // Expert files first: making a Mixtral-shaped one takes seconds, better before the daemons.
  for (const RpcShape& shape : o.shapes) o.expert_file(shape);
  std::printf("\nrpc: starting daemons...\n");
  std::fflush(stdout);
  const auto start = Clock::now();
  TRUSTMOE_ASSIGN_OR_RETURN(std::unique_ptr<Rig> rig, StartRig(o));
  auto result = Run(*rig, o, Seconds(start));
  // Stopped here (edge, store, validators), so that a daemon that does not stop cleanly is
  // reported before the section's figures are used.
  rig->stub.reset();
  const int unclean = rig->daemons->Stop();
  if (result.ok()) (*result)["daemons_stopped_cleanly"] = unclean == 0;
  return result;
}

}  // namespace trustmoe::bench
