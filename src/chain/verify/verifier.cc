#include "chain/verify/verifier.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <thread>

#include "chain/verify/sampling.h"
#include "edge/numeric.h"

// Declares `var` = `fetch_expr` (a FetchTensor call that fills the local `rejected`), and
// returns from the enclosing check: the edge's rejection when it is to blame, otherwise the
// error (no verdict yet).
#define TRUSTMOE_FETCH_OR_RETURN(var, fetch_expr)                 \
  auto var = (fetch_expr);                                        \
  if (!var.ok()) {                                                \
    if (rejected.verdict == Verdict::kRejected) return rejected;  \
    return var.status();                                          \
  }

namespace trustmoe::verify {
namespace {

using ledger::RejectReason;
using ledger::Verdict;

Outcome Reject(RejectReason reason, std::string detail) {
  Outcome o;
  o.verdict = Verdict::kRejected;
  o.reason = reason;
  if (detail.size() > ledger::kVoteDetailBytesMax) detail.resize(ledger::kVoteDetailBytesMax);
  o.detail = std::move(detail);
  return o;
}

std::string Short(const std::string& cid) { return cid.substr(0, 24) + "..."; }

// Rows `rows` of `t` as an f32 tensor (exact: every dtype widens to f32 without rounding).
Result<edge::HostTensor> GatherF32(const edge::HostTensor& t, const std::vector<int64_t>& rows) {
  const size_t elem = edge::DTypeBytes(t.dtype);
  const size_t row_bytes = static_cast<size_t>(t.cols) * elem;
  Bytes picked;
  picked.reserve(rows.size() * row_bytes);
  for (int64_t r : rows) {
    const uint8_t* p = t.data.data() + static_cast<size_t>(r) * row_bytes;
    picked.insert(picked.end(), p, p + row_bytes);
  }
  TRUSTMOE_ASSIGN_OR_RETURN(std::vector<float> f, edge::ToFloats(t.dtype, picked));
  edge::HostTensor out;
  out.dtype = edge::DType::kF32;
  out.rows = static_cast<int64_t>(rows.size());
  out.cols = t.cols;
  out.data = edge::FromFloats(edge::DType::kF32, f);
  return out;
}

std::string FormatError(double e) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3g", e);
  return buf;
}

}  // namespace

ledger::VoteBody Outcome::Vote(const crypto::PublicKey& edge, uint64_t nonce) const {
  ledger::VoteBody body;
  body.edge = edge;
  body.result_nonce = nonce;
  body.verdict = verdict;
  body.reason = verdict == Verdict::kAccepted ? RejectReason::kNone : reason;
  body.detail = detail.substr(0, ledger::kVoteDetailBytesMax);
  return body;
}

ResultVerifier::ResultVerifier(ledger::ChainParams params, edge::ExpertRuntime* runtime,
                               BlobSource* blobs, VerifierOptions options)
    : params_(params),
      runtime_(runtime),
      blobs_(blobs),
      options_(options),
      clock_(options.clock != nullptr ? options.clock : SystemClock::Get()) {}

Result<Bytes> ResultVerifier::FetchTensor(std::string_view what, const std::string& cid_text,
                                          int64_t deadline_ms, Outcome* rejected,
                                          uint64_t bytes_max, int64_t late_after_unix_ms) {
  if (bytes_max == 0) bytes_max = options_.tensor_bytes_max;
  if (cid_text.empty()) return Bytes();  // an optional tensor the record does not name
  auto cid = crypto::Cid::Parse(cid_text);
  if (!cid.ok()) return Status::Internal("result holds a bad CID (the ledger checks them)");
  for (;;) {
    auto bytes = blobs_->Get(*cid, bytes_max);
    if (bytes.ok() && late_after_unix_ms > 0) {
      auto created = blobs_->CreatedUnixMs(*cid);
      if (!created.ok()) return created.status().WithContext(std::string("dating ") + std::string(what));
      if (*created > late_after_unix_ms) {
        *rejected = Reject(RejectReason::kOutputMissing,
                           std::string(what) + " " + Short(cid_text) + " reached the store " +
                               std::to_string(*created - late_after_unix_ms) +
                               " ms after the deadline");
        return Status::NotFound("late");
      }
    }
    if (bytes.ok()) return bytes;
    const StatusCode code = bytes.status().code();
    if (code == StatusCode::kFailedPrecondition) {
      // Over this validator's own limit ([verify] tensor_bytes_max / expert_bytes_max): a local
      // setting, not a rule of the chain, so no vote; the operator raises the limit.
      return Status::ResourceExhausted(std::string(what) + " " + Short(cid_text) +
                                       " is larger than this validator's limit of " +
                                       std::to_string(bytes_max) +
                                       " bytes ([verify] tensor_bytes_max / expert_bytes_max)");
    }
    if (code != StatusCode::kNotFound) {
      // A busy, slow, unreachable or corrupt store, or our own trouble: not the edge's fault.
      // No vote; the caller tries again later.
      return bytes.status().WithContext(std::string("fetching ") + std::string(what));
    }
    if (clock_->MonotonicMs() >= deadline_ms) {
      *rejected = Reject(RejectReason::kOutputMissing, std::string(what) + " " + Short(cid_text) +
                                                           " is not in the store by the deadline");
      return bytes.status();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(options_.fetch_retry_ms));
  }
}

int64_t ResultVerifier::DeadlineMs(int64_t ordered_unix_ms) const {
  const int64_t now = clock_->MonotonicMs();
  if (ordered_unix_ms <= 0) return now + params_.verify_deadline_ms;
  const int64_t left = ordered_unix_ms + params_.verify_deadline_ms - clock_->NowUnixMs();
  return now + std::max<int64_t>(left, 0);
}

Status ResultVerifier::EnsureExpert(const std::string& cid_text) {
  if (runtime_->Holds(cid_text)) return Status::Ok();
  // One load at a time: two checks of results on one expert download it once.
  std::lock_guard lock(load_mu_);
  if (runtime_->Holds(cid_text)) return Status::Ok();
  auto cid = crypto::Cid::Parse(cid_text);
  if (!cid.ok()) return Status::Internal("result holds a bad expert CID");
  auto bytes = blobs_->Get(*cid, options_.expert_bytes_max);
  if (!bytes.ok()) {
    // The edge ran this expert, so the store held it: a missing expert is the store's
    // problem (or ours), never a verdict on the edge.
    return Status::Unavailable("expert " + Short(cid_text) + ": " + bytes.status().ToString());
  }
  Status loaded = runtime_->Load(cid_text, *bytes);
  if (!loaded.ok()) {
    // A published expert that does not load here: the researcher's file, not the edge's
    // result, is at fault. No vote; the operator sees the error.
    return Status::FailedPrecondition("expert " + Short(cid_text) + " does not load: " +
                                      loaded.ToString());
  }
  return Status::Ok();
}

Result<Outcome> ResultVerifier::Verify(const ledger::ResultRecord& record,
                                       const crypto::Digest& block_digest,
                                       int64_t ordered_unix_ms) {
  const ledger::ExpertResultBody& body = record.body;
  const bool backward = body.kind == ledger::CallKind::kBackward;
  TRUSTMOE_RETURN_IF_ERROR(EnsureExpert(body.expert_cid));
  TRUSTMOE_ASSIGN_OR_RETURN(edge::ExpertSpec spec, runtime_->Spec(body.expert_cid));

  const int64_t deadline = DeadlineMs(ordered_unix_ms);
  const int64_t late_after =
      ordered_unix_ms > 0 ? ordered_unix_ms + params_.verify_deadline_ms : 0;
  Outcome rejected;
  rejected.verdict = Verdict::kAccepted;
  auto fetch = [&](std::string_view what, const std::string& cid) -> Result<Bytes> {
    return FetchTensor(what, cid, deadline, &rejected, 0, late_after);
  };
  TRUSTMOE_FETCH_OR_RETURN(input_bytes, fetch("input", body.input_cid));
  TRUSTMOE_FETCH_OR_RETURN(grad_bytes, fetch("grad_output", body.grad_output_cid));  // backward
  TRUSTMOE_FETCH_OR_RETURN(output_bytes, fetch("output", body.output_cid));

  // Parse: any width here, so that a wrong width is told apart from a broken file.
  auto parse = [&](std::string_view what, const Bytes& file) -> Result<edge::HostTensor> {
    auto t = edge::ReadActivations(file, 0, options_.rows_max);
    if (!t.ok()) {
      rejected = Reject(RejectReason::kMalformedTensor,
                        std::string(what) + ": " + t.status().message());
      return t.status();
    }
    if (t->cols != spec.d_model || t->rows != static_cast<int64_t>(body.rows)) {
      rejected = Reject(RejectReason::kWrongShape,
                        std::string(what) + " is [" + std::to_string(t->rows) + ", " +
                            std::to_string(t->cols) + "], the commitment and expert say [" +
                            std::to_string(body.rows) + ", " + std::to_string(spec.d_model) + "]");
      return Status::InvalidArgument("shape");
    }
    return t;
  };
  auto x = parse("input", *input_bytes);
  if (!x.ok()) return rejected;
  edge::HostTensor g;
  if (backward) {
    auto parsed = parse("grad_output", *grad_bytes);
    if (!parsed.ok()) return rejected;
    g = std::move(parsed).value();
  }
  auto y = parse("output", *output_bytes);
  if (!y.ok()) return rejected;

  const std::vector<int64_t> rows = SampleRows(SampleSeed(block_digest, record.edge, record.nonce),
                                               x->rows, params_.verify_rows_min,
                                               params_.verify_fraction_ppm);
  TRUSTMOE_ASSIGN_OR_RETURN(edge::HostTensor xs, GatherF32(*x, rows));
  // A non-finite input row: the edge refuses those, so a result over one is malformed.
  if (int64_t bad = edge::FirstNonFinite(xs.dtype, xs.data); bad >= 0) {
    return Reject(RejectReason::kMalformedTensor,
                  "input row " + std::to_string(rows[static_cast<size_t>(bad / xs.cols)]) +
                      " holds NaN or infinity");
  }
  Result<edge::HostTensor> reference = Status::Internal("unset");
  if (backward) {
    TRUSTMOE_ASSIGN_OR_RETURN(edge::HostTensor gs, GatherF32(g, rows));
    if (int64_t bad = edge::FirstNonFinite(gs.dtype, gs.data); bad >= 0) {
      return Reject(RejectReason::kMalformedTensor,
                    "grad_output row " + std::to_string(rows[static_cast<size_t>(bad / gs.cols)]) +
                        " holds NaN or infinity");
    }
    auto back = runtime_->Backward(body.expert_cid, xs, gs, false, false);
    if (!back.ok()) return back.status().WithContext("re-computing the backward");
    reference = std::move(back->grad_input);
  } else {
    reference = runtime_->Forward(body.expert_cid, xs);
  }
  if (reference.status().code() == StatusCode::kNotFound) {
    return Status::Unavailable("expert evicted meanwhile; trying again");
  }
  if (!reference.ok()) return reference.status().WithContext("re-computing");
  TRUSTMOE_ASSIGN_OR_RETURN(edge::HostTensor claimed, GatherF32(*y, rows));
  TRUSTMOE_ASSIGN_OR_RETURN(std::vector<float> ref, edge::ToFloats(reference->dtype, reference->data));
  TRUSTMOE_ASSIGN_OR_RETURN(std::vector<float> got, edge::ToFloats(claimed.dtype, claimed.data));

  // The coarser of the compute dtype and the output file's dtype: an f32 computation returned
  // as bf16 carries bf16's rounding.
  const ledger::ComputeDType output_precision =
      y->dtype == edge::DType::kBF16   ? ledger::ComputeDType::kBF16
      : y->dtype == edge::DType::kF16 ? ledger::ComputeDType::kF16
                                       : ledger::ComputeDType::kF32;
  const double tolerance =
      std::max(Tolerance(params_, body.dtype), Tolerance(params_, output_precision));
  const auto d = static_cast<size_t>(spec.d_model);
  Outcome ok;
  ok.rows_checked = static_cast<int64_t>(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    if (edge::FirstNonFinite(edge::DType::kF32,
                             ByteSpan(reinterpret_cast<const uint8_t*>(got.data() + i * d),
                                      d * sizeof(float))) >= 0) {
      // Honest edges refuse to commit an output that overflowed.
      return Reject(RejectReason::kMalformedTensor,
                    "output row " + std::to_string(rows[i]) + " holds NaN or infinity");
    }
    const double e = RowError(std::span<const float>(got).subspan(i * d, d),
                              std::span<const float>(ref).subspan(i * d, d));
    ok.max_error = std::max(ok.max_error, e);
    if (!(e <= tolerance)) {
      Outcome bad = Reject(RejectReason::kMismatch,
                           "row " + std::to_string(rows[i]) + ": relative error " + FormatError(e) +
                               " > tolerance " + FormatError(tolerance) + " (compute " +
                               std::string(ledger::ComputeDTypeName(body.dtype)) + ", output " +
                               std::string(ledger::ComputeDTypeName(output_precision)) + ")");
      bad.rows_checked = ok.rows_checked;
      bad.max_error = e;
      return bad;
    }
  }
  return ok;
}

}  // namespace trustmoe::verify

namespace trustmoe::verify {
namespace {

using ledger::RejectReason;
using ledger::Verdict;

// name -> f32 values of every tensor of a safetensors file.
Result<std::map<std::string, std::vector<float>>> TensorsOf(ByteSpan file) {
  TRUSTMOE_ASSIGN_OR_RETURN(edge::SafetensorsFile parsed, edge::ParseSafetensors(file));
  std::map<std::string, std::vector<float>> out;
  for (const edge::TensorInfo& t : parsed.tensors()) {
    TRUSTMOE_ASSIGN_OR_RETURN(out[t.name], edge::ToFloats(t.dtype, parsed.Data(t)));
  }
  return out;
}

double L2(const std::vector<float>& a, const std::vector<float>* b = nullptr) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - (b != nullptr ? (*b)[i] : 0.0);
    s += d * d;
  }
  return std::sqrt(s);
}

edge::OptimizerSpec RuntimeOptimizer(const ledger::OptimizerParams& o) {
  edge::OptimizerSpec spec;
  spec.kind = o.kind == ledger::OptimizerKind::kAdam ? edge::OptimizerKind::kAdam
                                                       : edge::OptimizerKind::kSgd;
  spec.lr = o.lr;
  spec.momentum = o.momentum;
  spec.beta1 = o.beta1;
  spec.beta2 = o.beta2;
  spec.eps = o.eps;
  spec.weight_decay = o.weight_decay;
  return spec;
}

// Removes the runtime entry `key` when it goes out of scope.
struct Unloader {
  edge::ExpertRuntime* runtime;
  std::string key;
  ~Unloader() { (void)runtime->Unload(key); }
};

}  // namespace

bool UpdateSelected(const crypto::Digest& block_digest, const crypto::PublicKey& edge,
                    uint64_t nonce, uint32_t fraction_ppm) {
  const crypto::Digest seed = SampleSeed(block_digest, edge, nonce);
  uint64_t coin = 0;
  for (int i = 0; i < 8; ++i) coin |= uint64_t{seed[i]} << (8 * i);
  return coin % 1000000 < fraction_ppm;
}

Result<Outcome> ResultVerifier::VerifyUpdate(const ledger::UpdateRecord& record,
                                             const crypto::Digest& block_digest,
                                             const std::vector<ledger::ResultRecord>& sources,
                                             int64_t ordered_unix_ms) {
  const ledger::ExpertUpdatedBody& body = record.body;
  TRUSTMOE_RETURN_IF_ERROR(EnsureExpert(body.parent_cid));
  TRUSTMOE_ASSIGN_OR_RETURN(edge::ExpertSpec spec, runtime_->Spec(body.parent_cid));
  const int64_t deadline = DeadlineMs(ordered_unix_ms);
  const int64_t late_after =
      ordered_unix_ms > 0 ? ordered_unix_ms + params_.verify_deadline_ms : 0;
  Outcome rejected;
  rejected.verdict = Verdict::kAccepted;
  auto fetch = [&](std::string_view what, const std::string& cid) -> Result<Bytes> {
    // Weights and optimizer states are as large as experts.
    const bool weights = !what.starts_with("source");
    return FetchTensor(what, cid, deadline, &rejected,
                       weights ? options_.expert_bytes_max : options_.tensor_bytes_max,
                       weights ? late_after : 0);
  };
  TRUSTMOE_FETCH_OR_RETURN(child_file, fetch("child weights", body.child_cid));
  TRUSTMOE_FETCH_OR_RETURN(child_state_file, fetch("child optimizer state", body.child_state_cid));
  TRUSTMOE_FETCH_OR_RETURN(parent_state_file,
                           fetch("parent optimizer state", body.parent_state_cid));

  // Always: the child is an expert file of the parent's architecture.
  auto child_parsed = edge::ParseSafetensors(*child_file);
  if (!child_parsed.ok()) {
    return Reject(RejectReason::kMalformedTensor, "child weights: " + child_parsed.status().message());
  }
  auto child_spec = edge::ValidateExpert(*child_parsed);
  if (!child_spec.ok()) {
    return Reject(RejectReason::kMalformedTensor, "child weights: " + child_spec.status().message());
  }
  if (child_spec->arch != spec.arch || child_spec->d_model != spec.d_model ||
      child_spec->d_ff != spec.d_ff || child_file->size() != body.child_size) {
    return Reject(RejectReason::kWrongShape,
                  "the child is not the parent's architecture or not child_size bytes");
  }
  Outcome ok;
  if (!UpdateSelected(block_digest, record.edge, record.nonce, params_.verify_update_fraction_ppm)) {
    ok.detail = "not selected for re-computation; the child is well-formed";
    return ok;
  }

  // Re-run the step on a training copy of the parent.
  const std::string train_key = ledger::UpdateKey(record.edge, record.nonce);
  if (runtime_->Holds(train_key)) (void)runtime_->Unload(train_key);
  TRUSTMOE_RETURN_IF_ERROR(runtime_->Clone(body.parent_cid, train_key));
  Unloader unload{runtime_, train_key};
  if (!parent_state_file->empty()) {
    Status imported = runtime_->ImportOptimizerState(train_key, *parent_state_file);
    if (!imported.ok()) {
      return Reject(RejectReason::kMalformedTensor, "parent optimizer state: " + imported.message());
    }
  }
  for (const ledger::ResultRecord& source : sources) {
    TRUSTMOE_FETCH_OR_RETURN(x_file, fetch("source input", source.body.input_cid));
    TRUSTMOE_FETCH_OR_RETURN(g_file, fetch("source grad_output", source.body.grad_output_cid));
    auto x = edge::ReadActivations(*x_file, spec.d_model, options_.rows_max);
    auto g = edge::ReadActivations(*g_file, spec.d_model, options_.rows_max);
    if (!x.ok() || !g.ok() || x->rows != g->rows) {
      return Reject(RejectReason::kMalformedTensor, "a source's input or grad_output does not parse");
    }
    auto back = runtime_->Backward(train_key, *x, *g, /*want_weight_grads=*/false,
                                   /*accumulate=*/true);
    if (!back.ok()) {
      // Only a source the runtime refuses for its content (NaN, width) is the edge's fault;
      // memory or internal trouble here is ours: no vote.
      if (back.status().code() != StatusCode::kInvalidArgument) {
        return back.status().WithContext("re-running a source");
      }
      return Reject(RejectReason::kMalformedTensor, "a source does not re-run: " + back.status().message());
    }
  }
  TRUSTMOE_RETURN_IF_ERROR(runtime_->Step(train_key, RuntimeOptimizer(body.optimizer)));
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes reference_file, runtime_->Export(train_key, edge::DType::kF32));
  TRUSTMOE_ASSIGN_OR_RETURN(Bytes parent_file, runtime_->Export(body.parent_cid, edge::DType::kF32));
  TRUSTMOE_ASSIGN_OR_RETURN(auto reference, TensorsOf(reference_file));
  TRUSTMOE_ASSIGN_OR_RETURN(auto parent, TensorsOf(parent_file));
  auto child = TensorsOf(*child_file);
  if (!child.ok()) return Reject(RejectReason::kMalformedTensor, "child weights do not read");

  const double tolerance = params_.tolerance_update_ppm * 1e-6;
  // The new optimizer state first: the weight check below builds on it.
  if (!body.child_state_cid.empty()) {
    TRUSTMOE_ASSIGN_OR_RETURN(Bytes ref_state_file, runtime_->ExportOptimizerState(train_key));
    TRUSTMOE_ASSIGN_OR_RETURN(auto ref_state, TensorsOf(ref_state_file));
    auto state = TensorsOf(*child_state_file);
    if (!state.ok() || state->size() != ref_state.size()) {
      return Reject(RejectReason::kMalformedTensor,
                    "the child optimizer state does not hold the step's tensors");
    }
    for (const auto& [name, ref] : ref_state) {
      auto it = state->find(name);
      if (it == state->end() || it->second.size() != ref.size()) {
        return Reject(RejectReason::kMalformedTensor, "child optimizer state lacks " + name);
      }
      const double e = L2(it->second, &ref) / std::max(L2(ref), 1e-12);
      if (!(e <= tolerance)) {
        return Reject(RejectReason::kMismatch, "optimizer state " + name + ": relative error " +
                                                   FormatError(e) + " > tolerance " +
                                                   FormatError(tolerance));
      }
    }
    // The metadata is state too: the next step's bias correction depends on adam_steps.
    TRUSTMOE_ASSIGN_OR_RETURN(edge::SafetensorsFile ref_parsed,
                              edge::ParseSafetensors(ref_state_file));
    auto parsed = edge::ParseSafetensors(*child_state_file);
    for (const char* key : {"trustmoe.format", "trustmoe.adam_steps"}) {
      auto want = ref_parsed.metadata().find(key);
      auto got = parsed->metadata().find(key);
      if (want != ref_parsed.metadata().end() &&
          (got == parsed->metadata().end() || got->second != want->second)) {
        return Reject(RejectReason::kMismatch, "optimizer state " + std::string(key) + " is not " +
                                                   want->second + " as the step gives");
      }
    }
  }
  // A stateful step's weight change is checked against the change the edge's own new state
  // gives (docs/verification.md, "Expert updates"): Adam divides by sqrt(v), so where a
  // gradient is near zero an honest GPU's rounding can flip the change of an element from 0 to
  // +-lr; the state itself (m, v, momentum: linear or quadratic in the gradient) is compared
  // with the re-run below, and the weights must follow from it.
  std::map<std::string, std::vector<float>> claimed_state;
  double adam_steps = 0;
  if (!body.child_state_cid.empty()) {
    auto state = TensorsOf(*child_state_file);
    auto parsed = edge::ParseSafetensors(*child_state_file);
    if (!state.ok() || !parsed.ok()) {
      return Reject(RejectReason::kMalformedTensor, "the child optimizer state does not read");
    }
    claimed_state = std::move(state).value();
    auto steps = parsed->metadata().find("trustmoe.adam_steps");
    if (steps != parsed->metadata().end()) adam_steps = std::atof(steps->second.c_str());
  }
  const ledger::OptimizerParams& opt = body.optimizer;
  for (const auto& [name, ref] : reference) {
    const std::vector<float>& p = parent.at(name);
    const std::vector<float>& c = child->at(name);
    for (float v : c) {
      if (!std::isfinite(v)) {
        return Reject(RejectReason::kMismatch, "child tensor " + name + " holds NaN or infinity");
      }
    }
    std::vector<float> expected = ref;
    if (opt.kind == ledger::OptimizerKind::kAdam || opt.momentum > 0) {
      const bool adam = opt.kind == ledger::OptimizerKind::kAdam;
      auto m = claimed_state.find((adam ? "adam_m." : "momentum.") + name);
      auto v = claimed_state.find("adam_v." + name);
      if (m == claimed_state.end() || m->second.size() != p.size() ||
          (adam && (v == claimed_state.end() || v->second.size() != p.size() || adam_steps < 1))) {
        return Reject(RejectReason::kMalformedTensor, "the child optimizer state lacks " + name);
      }
      const double bias1 = adam ? 1 - std::pow(opt.beta1, adam_steps) : 1;
      const double bias2 = adam ? 1 - std::pow(opt.beta2, adam_steps) : 1;
      for (size_t i = 0; i < p.size(); ++i) {
        const double step = adam ? m->second[i] / (std::sqrt(std::max(0.0f, v->second[i]) / bias2) + opt.eps)
                                 : m->second[i];
        expected[i] = static_cast<float>(p[i] - opt.lr / bias1 * step);
      }
    }
    // The error of the edge's weight change against the expected one, relative to the latter.
    const double change = L2(expected, &p);
    const double e = L2(c, &expected) / std::max(change, 1e-7 * L2(p) + 1e-12);
    ok.max_error = std::max(ok.max_error, e);
    if (!(e <= tolerance)) {
      Outcome bad = Reject(RejectReason::kMismatch,
                           "tensor " + name + ": relative error of the update " + FormatError(e) +
                               " > tolerance " + FormatError(tolerance));
      bad.max_error = e;
      return bad;
    }
  }
  ok.rows_checked = 0;
  for (const auto& s : sources) ok.rows_checked += static_cast<int64_t>(s.body.rows);
  return ok;
}

}  // namespace trustmoe::verify
