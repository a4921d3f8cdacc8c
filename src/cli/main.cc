// trustmoe: the one CLI of TrustMoE (keys, certificates, store, genesis, ledger, jobs).
#include <cstdio>

#include "cli/cli.h"
#include "common/malloc_tuning.h"

int main(int argc, char** argv) {
  trustmoe::TuneMallocForStreaming();
  CLI::App app{
      "trustmoe: command line of TrustMoE (keys, certificates, blob store, genesis, ledger "
      "audit, node/expert/model registration, jobs)"};
  app.set_version_flag("--version", "trustmoe 0.1.0");
  app.require_subcommand(1);
  trustmoe::cli::Action run;
  trustmoe::cli::AddKeyCommands(app, &run);
  trustmoe::cli::AddCertCommands(app, &run);
  trustmoe::cli::AddStoreCommands(app, &run);
  trustmoe::cli::AddGenesisCommands(app, &run);
  trustmoe::cli::AddLedgerCommands(app, &run);
  trustmoe::cli::AddNodeCommands(app, &run);
  trustmoe::cli::AddExpertCommands(app, &run);
  trustmoe::cli::AddModelCommands(app, &run);
  trustmoe::cli::AddJobCommands(app, &run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (!run) return 2;
  trustmoe::Status status = run();
  if (!status.ok()) {
    std::fprintf(stderr, "trustmoe: error: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
