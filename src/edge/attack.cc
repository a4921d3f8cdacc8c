#include "edge/attack.h"

#include <algorithm>
#include <cmath>

namespace trustmoe::edge {
namespace {

const std::vector<std::string> kKinds = {"scale", "noise", "sign", "zero", "replay"};

}  // namespace

Status AttackConfig::Validate() const {
  if (mode != "none" && mode != "consistent" && mode != "intermittent") {
    return Status::InvalidArgument("attack.mode must be \"none\", \"consistent\" or \"intermittent\", got \"" +
                                   mode + "\"");
  }
  if (kinds.empty()) return Status::InvalidArgument("attack.kinds must name at least one kind");
  for (const std::string& k : kinds) {
    if (std::find(kKinds.begin(), kKinds.end(), k) == kKinds.end()) {
      return Status::InvalidArgument("attack.kinds: unknown kind \"" + k +
                                     "\" (scale, noise, sign, zero, replay)");
    }
  }
  if (!(fraction >= 0 && fraction <= 1)) {
    return Status::InvalidArgument("attack.fraction must be in [0, 1]");
  }
  return Status::Ok();
}

Attacker::Attacker(AttackConfig config) : config_(std::move(config)), rng_(config_.seed) {}

uint64_t Attacker::altered() const {
  std::lock_guard lock(mu_);
  return altered_;
}

void Attacker::Alter(const std::string& kind, std::vector<float>* v, int64_t cols) {
  if (kind == "scale") {
    for (float& x : *v) x *= 4.0f;
  } else if (kind == "sign") {
    for (float& x : *v) x = -x;
  } else if (kind == "zero") {
    std::fill(v->begin(), v->end(), 0.0f);
  } else if (kind == "noise") {
    double ss = 0;
    for (float x : *v) ss += static_cast<double>(x) * x;
    const double rms = std::sqrt(ss / std::max<size_t>(v->size(), 1)) + 1e-3;
    std::normal_distribution<double> n(0.0, 2.0 * rms);
    for (float& x : *v) x += static_cast<float>(n(rng_));
  } else if (kind == "replay") {
    // Another input's output: the last honest one, rows cycled to this call's row count.
    if (last_.empty() || cols <= 0 || last_.size() % static_cast<size_t>(cols) != 0) {
      std::fill(v->begin(), v->end(), 0.0f);
      return;
    }
    for (size_t i = 0; i < v->size(); ++i) (*v)[i] = last_[i % last_.size()];
  }
}

std::string Attacker::Apply(HostTensor* y) {
  if (!config_.enabled()) return "";
  auto values = ToFloats(y->dtype, y->data);
  if (!values.ok()) return "";
  std::lock_guard lock(mu_);
  ++calls_;
  std::string kind;
  if (config_.mode == "consistent") {
    kind = config_.kinds.front();
  } else if (calls_ > config_.honest_calls) {
    std::uniform_real_distribution<double> u(0.0, 1.0);
    if (u(rng_) < config_.fraction) {
      kind = config_.kinds[std::uniform_int_distribution<size_t>(0, config_.kinds.size() - 1)(rng_)];
    }
  }
  if (kind.empty() || (kind == "replay" && last_.empty())) {
    if (!kind.empty()) kind = "";
    last_ = *values;
    return "";
  }
  std::vector<float> v = std::move(values).value();
  Alter(kind, &v, y->cols);
  y->data = FromFloats(y->dtype, v);
  ++altered_;
  return kind;
}

}  // namespace trustmoe::edge
