// Fault injection for the robustness experiment (docs/results/robustness.md): an edge configured
// with an [attack] section alters the outputs it computes *before* it signs and commits them, as
// a malicious operator would, so its commitments stay well-formed and only re-computation can
// catch it. Never enable it outside experiments: the edge logs a warning at every start. No
// libtorch.
//
//   mode = "none" | "consistent" | "intermittent"
//   kinds = ["scale", "noise", "sign", "zero", "replay"]   (consistent uses the first)
//   honest_calls = 0      intermittent: calls served honestly before the attack starts
//   fraction = 0.5        intermittent: share of later results altered (kind drawn per result)
//   seed = 1
#pragma once

#include <cstdint>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "common/status.h"
#include "edge/numeric.h"

namespace trustmoe::edge {

struct AttackConfig {
  std::string mode = "none";
  std::vector<std::string> kinds{"scale"};
  uint64_t honest_calls = 0;
  double fraction = 0.5;
  uint64_t seed = 1;

  bool enabled() const { return mode != "none"; }
  // InvalidArgument naming the bad value.
  Status Validate() const;
};

class Attacker {
 public:
  explicit Attacker(AttackConfig config);
  // Alters `y` in place when this call is attacked; returns the kind applied ("" for none).
  std::string Apply(HostTensor* y);
  uint64_t altered() const;

 private:
  void Alter(const std::string& kind, std::vector<float>* v, int64_t cols);
  AttackConfig config_;
  mutable std::mutex mu_;
  std::mt19937_64 rng_;
  uint64_t calls_ = 0;
  uint64_t altered_ = 0;
  std::vector<float> last_;  // the last honest output (replay)
};

}  // namespace trustmoe::edge
