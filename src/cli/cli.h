// Shared pieces of the `trustmoe` CLI's subcommands.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <string>

#include "common/status.h"

namespace trustmoe::cli {

// Each subcommand group registers itself on the app and sets `run` to its action when chosen.
using Action = std::function<Status()>;

void AddKeyCommands(CLI::App& app, Action* run);
void AddCertCommands(CLI::App& app, Action* run);
void AddStoreCommands(CLI::App& app, Action* run);
// chain_commands.cc: genesis, ledger (audit), node register, expert/model publish.
void AddGenesisCommands(CLI::App& app, Action* run);
void AddLedgerCommands(CLI::App& app, Action* run);
void AddNodeCommands(CLI::App& app, Action* run);
void AddExpertCommands(CLI::App& app, Action* run);
void AddModelCommands(CLI::App& app, Action* run);
// expert_commands.cc: expert new | input | run, under the `expert` group.
void AddExpertFileCommands(CLI::App* expert, Action* run);
// job_commands.cc: job submit | watch | list | cancel | result (the gate's JobService).
void AddJobCommands(CLI::App& app, Action* run);

// Prints "\r<verb> 12.0 MiB / 1.0 GiB (1%) 300.2 MiB/s" on a terminal, or a line per quarter
// otherwise; only for transfers of at least 8 MiB.
class Progress {
 public:
  explicit Progress(std::string verb);
  void Update(uint64_t done, uint64_t total);
  void Finish();

 private:
  std::string verb_;
  bool tty_;
  int64_t start_ms_;
  int64_t last_ms_ = 0;
  int last_quarter_ = 0;
  bool shown_ = false;
};

std::string HumanBytes(uint64_t bytes);

}  // namespace trustmoe::cli
