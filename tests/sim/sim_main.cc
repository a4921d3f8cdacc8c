// sim: runs the deterministic PBFT cluster simulation for a range of seeds.
//
//   sim [--seeds N] [--start S] [--faults MIX|all] [--one-replica] [--verbose]
//
// Seed s runs mix number (s mod the number of mixes) when --faults is "all" (the default).
// --one-replica: each transaction is submitted to one replica only (SimOptions).
// Prints one line per failing seed with the broken invariant and the command that replays it;
// exits 1 if any seed failed, 2 on bad flags.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "sim_cluster.h"

namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: sim [--seeds N] [--start S] [--faults MIX|all] [--one-replica] "
               "[--verbose]\n"
               "mixes:");
  for (const auto& mix : trustmoe::sim::AllMixes()) std::fprintf(stderr, " %s", mix.name.c_str());
  std::fprintf(stderr, "\n");
  return 2;
}

bool ParseU64(const char* text, uint64_t* out) {
  char* end = nullptr;
  *out = std::strtoull(text, &end, 10);
  return end != text && *end == '\0';
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seeds = 100;
  uint64_t start = 1;
  std::string faults = "all";
  bool verbose = false;
  bool one_replica = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--verbose") {
      verbose = true;
    } else if (arg == "--one-replica") {
      one_replica = true;
    } else if (arg == "--seeds" && i + 1 < argc) {
      if (!ParseU64(argv[++i], &seeds)) return Usage();
    } else if (arg == "--start" && i + 1 < argc) {
      if (!ParseU64(argv[++i], &start)) return Usage();
    } else if (arg == "--faults" && i + 1 < argc) {
      faults = argv[++i];
    } else {
      return Usage();
    }
  }
  const std::vector<trustmoe::sim::FaultMix> mixes = trustmoe::sim::AllMixes();
  trustmoe::sim::FaultMix fixed;
  if (faults != "all" && !trustmoe::sim::MixByName(faults, &fixed)) return Usage();

  uint64_t failed = 0;
  for (uint64_t seed = start; seed < start + seeds; ++seed) {
    trustmoe::sim::SimOptions options;
    options.seed = seed;
    options.mix = faults == "all" ? mixes[seed % mixes.size()] : fixed;
    options.one_replica_per_tx = one_replica;
    options.verbose = verbose;
    trustmoe::sim::SimResult result = trustmoe::sim::RunSimulation(options);
    if (verbose || seeds == 1) {
      std::printf("seed %llu mix %s: %s\n", static_cast<unsigned long long>(seed),
                  options.mix.name.c_str(), result.Summary().c_str());
    }
    if (!result.ok) {
      ++failed;
      std::printf(
          "FAIL seed %llu mix %s: %s: %s\n  replay: sim --start %llu --seeds 1 --faults %s%s "
          "--verbose\n",
          static_cast<unsigned long long>(seed), options.mix.name.c_str(), result.invariant.c_str(),
          result.detail.c_str(), static_cast<unsigned long long>(seed), options.mix.name.c_str(),
          one_replica ? " --one-replica" : "");
    }
  }
  std::printf("%llu seeds from %llu (%s%s): %llu failed\n", static_cast<unsigned long long>(seeds),
              static_cast<unsigned long long>(start), faults.c_str(),
              one_replica ? ", one replica per transaction" : "",
              static_cast<unsigned long long>(failed));
  return failed == 0 ? 0 : 1;
}
