// trustmoe job submit | watch | list | cancel | result (docs/researcher.md, "Jobs").
//
// Every request to the gate is signed with the researcher's key for the chain named in the
// genesis file (gate::JobClient). A spec is parsed and checked here before anything else, so a
// malformed one fails with its file and line and without a network call; the file's exact text
// is what is signed and sent.
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <sstream>

#include "chain/ledger/genesis.h"
#include "chain/ledger/job.h"
#include "cli/cli.h"
#include "common/clock.h"
#include "common/files.h"
#include "crypto/cid.h"
#include "crypto/ed25519.h"
#include "gate/job_client.h"
#include "gate/job_spec.h"
#include "storage/store_client.h"

namespace trustmoe::cli {
namespace {

using nlohmann::ordered_json;

// A spec file is read whole; the gate refuses more than ledger::kJobSpecBytesMax anyway.
constexpr uint64_t kSpecFileBytesMax = 1 << 20;
// Without a terminal: a progress line at most this often, or each 5 % of the steps.
constexpr int64_t kLinePeriodMs = 5000;
constexpr uint64_t kLineStepPercent = 5;
// On a terminal: the line is rewritten at most this often (and on every change of state).
constexpr int64_t kTtyRefreshMs = 200;

struct JobFlags {
  std::string gate;
  std::string key_file;
  std::string genesis_file;
  std::vector<std::string> store_endpoints;
  std::string tls_mode = "plaintext";
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  uint32_t timeout_ms = 30'000;
  bool json = false;
  // Subcommand arguments.
  std::string spec_file;
  std::string job_id;
  std::string out_file;
  bool watch = false;
};

JobFlags& Flags() {
  static JobFlags flags;
  return flags;
}

std::string FromEnv(const std::string& flag, const char* env) {
  if (!flag.empty()) return flag;
  const char* value = std::getenv(env);
  return value != nullptr ? value : "";
}

std::vector<std::string> SplitCommas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

Result<net::TransportConfig> TransportFromFlags() {
  const JobFlags& flags = Flags();
  net::TransportConfig transport;
  TRUSTMOE_ASSIGN_OR_RETURN(transport.mode, net::ParseTlsMode(flags.tls_mode));
  transport.ca_file = flags.tls_ca;
  transport.cert_file = flags.tls_cert;
  transport.key_file = flags.tls_key;
  transport.server_name_override = flags.tls_server_name;
  return transport;
}

// The gate, the researcher's key and the chain id, in that order, each with a message that
// says which flag or variable supplies it.
Result<std::unique_ptr<gate::JobClient>> MakeClient() {
  gate::JobClientOptions options;
  options.endpoint = FromEnv(Flags().gate, "TRUSTMOE_GATE");
  if (options.endpoint.empty()) {
    return Status::InvalidArgument("no gate: pass --gate host:port (or set TRUSTMOE_GATE)");
  }
  const std::string key_file = FromEnv(Flags().key_file, "TRUSTMOE_KEY");
  if (key_file.empty()) {
    return Status::InvalidArgument(
        "requests to the gate are signed with your researcher key: pass --key FILE or set "
        "TRUSTMOE_KEY");
  }
  auto key = crypto::PrivateKey::LoadPem(key_file);
  if (!key.ok()) return key.status().WithContext("researcher key");
  options.key = std::make_shared<const crypto::PrivateKey>(std::move(key).value());
  const std::string genesis_file = FromEnv(Flags().genesis_file, "TRUSTMOE_GENESIS");
  if (genesis_file.empty()) {
    return Status::InvalidArgument(
        "requests are signed for one chain: pass --genesis FILE (or set TRUSTMOE_GENESIS)");
  }
  auto genesis = ledger::Genesis::Load(genesis_file);
  if (!genesis.ok()) return genesis.status().WithContext("genesis file " + genesis_file);
  options.chain_id = genesis->chain_id;
  TRUSTMOE_ASSIGN_OR_RETURN(options.transport, TransportFromFlags());
  options.rpc_timeout_ms = Flags().timeout_ms;
  return gate::JobClient::Create(std::move(options));
}

// ---- Printing ----

std::string Percent(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", fraction * 100);
  return buf;
}

// "45s", "2m10s", "3h05m".
std::string Duration(double seconds) {
  const uint64_t s = static_cast<uint64_t>(std::llround(std::max(seconds, 0.0)));
  char buf[48];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%llus", static_cast<unsigned long long>(s));
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%llum%02llus", static_cast<unsigned long long>(s / 60),
                  static_cast<unsigned long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lluh%02llum", static_cast<unsigned long long>(s / 3600),
                  static_cast<unsigned long long>(s / 60 % 60));
  }
  return buf;
}

std::string TimeText(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string Hex(const std::string& bytes) { return ToHex(AsBytes(bytes)); }

// "[step 120/940 12%] epoch 1 loss 0.6123 acc 78.1% verified 1840 rejected 0 ETA 2m10s",
// preceded by the state when it is not "running".
std::string ProgressLine(const v1::JobProgress& p) {
  std::string line;
  if (p.state() == "queued") {
    line = "queued";
    if (!p.detail().empty()) line += " (" + p.detail() + ")";
    return line;
  }
  if (p.state() == "running" && p.steps_total() == 0) {
    // Before its first step: loading data, publishing experts, placing them.
    line = "starting";
    if (!p.detail().empty()) line += " (" + p.detail() + ")";
    return line;
  }
  if (p.state() != "running") line = p.state() + " ";
  char buf[160];
  if (p.steps_total() > 0) {
    std::snprintf(buf, sizeof buf, "[step %llu/%llu %llu%%]",
                  static_cast<unsigned long long>(p.step()),
                  static_cast<unsigned long long>(p.steps_total()),
                  static_cast<unsigned long long>(p.step() * 100 / p.steps_total()));
  } else {
    std::snprintf(buf, sizeof buf, "[step %llu]", static_cast<unsigned long long>(p.step()));
  }
  line += buf;
  std::snprintf(buf, sizeof buf, " epoch %u loss %.4f acc %s verified %llu rejected %llu",
                p.epoch(), p.loss(), Percent(p.train_accuracy()).c_str(),
                static_cast<unsigned long long>(p.verified()),
                static_cast<unsigned long long>(p.rejected()));
  line += buf;
  if (p.eta_seconds() >= 0 && p.state() == "running") line += " ETA " + Duration(p.eta_seconds());
  return line;
}

// "job ID completed: test accuracy 86.4%, loss 0.3812, 940 steps, verified 18800, rejected 0"
// or "job ID failed: <detail>".
std::string SummaryLine(const v1::JobProgress& p) {
  std::string line = "job " + p.job_id() + " " + p.state();
  if (p.state() == "completed") {
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  ": test accuracy %s, loss %.4f, %llu steps, verified %llu, "
                  "rejected %llu",
                  p.test_accuracy() >= 0 ? Percent(p.test_accuracy()).c_str() : "-", p.loss(),
                  static_cast<unsigned long long>(p.step()),
                  static_cast<unsigned long long>(p.verified()),
                  static_cast<unsigned long long>(p.rejected()));
    return line + buf;
  }
  if (!p.detail().empty()) line += ": " + p.detail();
  return line;
}

ordered_json ProgressJson(const v1::JobProgress& p) {
  ordered_json load = ordered_json::array();
  for (double f : p.expert_load()) load.push_back(f);
  return {{"job_id", p.job_id()},
          {"state", p.state()},
          {"step", p.step()},
          {"steps_total", p.steps_total()},
          {"epoch", p.epoch()},
          {"loss", p.loss()},
          {"train_accuracy", p.train_accuracy()},
          {"test_accuracy", p.test_accuracy() >= 0 ? ordered_json(p.test_accuracy()) : nullptr},
          {"verified", p.verified()},
          {"rejected", p.rejected()},
          {"rerouted", p.rerouted()},
          {"fallbacks", p.fallbacks()},
          {"blacklisted_edges", p.blacklisted_edges()},
          {"eta_seconds", p.eta_seconds() >= 0 ? ordered_json(p.eta_seconds()) : nullptr},
          {"samples_per_second", p.samples_per_second()},
          {"detail", p.detail()},
          {"expert_load", load}};
}

ordered_json InfoJson(const v1::JobInfo& info) {
  ordered_json placement = ordered_json::array();
  for (const v1::ExpertPlacement& entry : info.placement()) {
    ordered_json edges = ordered_json::array();
    for (const std::string& edge : entry.edges()) edges.push_back(Hex(edge));
    placement.push_back({{"index", entry.index()}, {"cid", entry.cid()}, {"edges", edges}});
  }
  return {{"job_id", info.job_id()},
          {"name", info.name()},
          {"kind", info.kind()},
          {"researcher", Hex(info.researcher())},
          {"gate", Hex(info.gate())},
          {"progress", ProgressJson(info.progress())},
          {"manifest_cid", info.manifest_cid()},
          {"predictions_cid", info.predictions_cid()},
          {"submitted_unix_ms", info.submitted_unix_ms()},
          {"finished_unix_ms", info.finished_unix_ms()},
          {"placement", placement},
          {"spec_toml", info.spec_toml()}};
}

void PrintJson(const ordered_json& j) { std::printf("%s\n", j.dump(2).c_str()); }

// The job's outcome as an exit status: Ok when it completed; the state and its detail
// otherwise (the CLI exits 1).
Status Outcome(const v1::JobProgress& p) {
  if (p.state() == "completed") return Status::Ok();
  std::string message = "job " + p.job_id() + " " + p.state();
  if (!p.detail().empty()) message += ": " + p.detail();
  return Status::Aborted(message);
}

// Shows WatchJob's messages on stderr: on a terminal one line rewritten in place, otherwise a
// line every kLinePeriodMs or every kLineStepPercent of the steps, and on each change of state.
class WatchPrinter {
 public:
  WatchPrinter() : tty_(::isatty(STDERR_FILENO) == 1), clock_(SystemClock::Get()) {}

  void Show(const v1::JobProgress& p) {
    if (Flags().json) {
      std::printf("%s\n", ProgressJson(p).dump().c_str());
      std::fflush(stdout);
      return;
    }
    const int64_t now = clock_->MonotonicMs();
    const uint64_t bucket =
        p.steps_total() > 0 ? p.step() * 100 / p.steps_total() / kLineStepPercent : 0;
    const bool changed = p.state() != state_;
    const bool due = tty_ ? now - last_ms_ >= kTtyRefreshMs
                          : now - last_ms_ >= kLinePeriodMs || bucket != bucket_;
    if (!changed && !due && shown_) return;
    state_ = p.state();
    bucket_ = bucket;
    last_ms_ = now;
    shown_ = true;
    if (tty_) {
      std::fprintf(stderr, "\r%s\033[K", ProgressLine(p).c_str());
    } else {
      std::fprintf(stderr, "%s\n", ProgressLine(p).c_str());
    }
    std::fflush(stderr);
  }

  // Ends the rewritten line, so that what follows starts on a line of its own.
  void Finish() {
    if (tty_ && shown_ && !Flags().json) std::fprintf(stderr, "\n");
  }

 private:
  bool tty_;
  Clock* clock_;
  std::string state_;
  uint64_t bucket_ = 0;
  int64_t last_ms_ = 0;
  bool shown_ = false;
};

// The result's CID: the manifest of a training job, the predictions of an inference job.
std::string OutputCid(const v1::JobInfo& info) {
  return !info.manifest_cid().empty() ? info.manifest_cid() : info.predictions_cid();
}

// Follows the job until it ends, then prints its summary (and output CID) on stdout.
Status WatchUntilDone(gate::JobClient& client, const std::string& job_id) {
  WatchPrinter printer;
  v1::JobProgress last;
  Status watched = client.Watch(job_id, [&](const v1::JobProgress& p) {
    last = p;
    printer.Show(p);
    return true;
  });
  printer.Finish();
  TRUSTMOE_RETURN_IF_ERROR(watched);
  if (last.job_id().empty()) last.set_job_id(job_id);
  if (!Flags().json) {
    std::printf("%s\n", SummaryLine(last).c_str());
    if (last.state() == "completed") {
      // The output's CID is in JobInfo, not in the progress stream.
      auto info = client.Get(job_id);
      if (info.ok() && !OutputCid(*info).empty()) {
        std::printf("%s %s\n", info->manifest_cid().empty() ? "predictions" : "manifest",
                    OutputCid(*info).c_str());
      }
    }
  }
  return Outcome(last);
}

// ---- Commands ----

Status SubmitCommand() {
  const std::string& path = Flags().spec_file;
  // Parsed from the very bytes that are then signed and sent, before any key or network use.
  auto text = ReadFile(path, kSpecFileBytesMax);
  if (!text.ok()) return text.status().WithContext("job spec");
  TRUSTMOE_RETURN_IF_ERROR(gate::ParseJobSpec(*text, path).status());
  if (text->size() > ledger::kJobSpecBytesMax) {
    return Status::InvalidArgument(path + " is " + std::to_string(text->size()) +
                                   " bytes; a gate accepts specs of at most " +
                                   std::to_string(ledger::kJobSpecBytesMax));
  }
  TRUSTMOE_ASSIGN_OR_RETURN(auto client, MakeClient());
  TRUSTMOE_ASSIGN_OR_RETURN(v1::JobInfo info, client->Submit(*text));
  if (Flags().json && !Flags().watch) {
    PrintJson(InfoJson(info));
    return Status::Ok();
  }
  if (Flags().json) {
    std::printf("%s\n", InfoJson(info).dump().c_str());  // then one line per progress message
  } else {
    std::printf("%s\n", info.job_id().c_str());
  }
  std::fflush(stdout);
  if (!Flags().watch) return Status::Ok();
  return WatchUntilDone(*client, info.job_id());
}

Status WatchCommand() {
  TRUSTMOE_ASSIGN_OR_RETURN(auto client, MakeClient());
  return WatchUntilDone(*client, Flags().job_id);
}

Status ListCommand() {
  TRUSTMOE_ASSIGN_OR_RETURN(auto client, MakeClient());
  TRUSTMOE_ASSIGN_OR_RETURN(std::vector<v1::JobInfo> jobs, client->List());
  if (Flags().json) {
    ordered_json all = ordered_json::array();
    for (const v1::JobInfo& info : jobs) all.push_back(InfoJson(info));
    PrintJson(all);
    return Status::Ok();
  }
  std::printf("%-32s %-24s %-9s %-10s %13s %8s  %s\n", "ID", "NAME", "KIND", "STATE", "STEP",
              "TEST ACC", "SUBMITTED");
  for (const v1::JobInfo& info : jobs) {
    const v1::JobProgress& p = info.progress();
    const std::string steps = std::to_string(p.step()) + "/" + std::to_string(p.steps_total());
    std::printf("%-32s %-24s %-9s %-10s %13s %8s  %s\n", info.job_id().c_str(), info.name().c_str(),
                info.kind().c_str(), p.state().c_str(), steps.c_str(),
                p.test_accuracy() >= 0 ? Percent(p.test_accuracy()).c_str() : "-",
                TimeText(info.submitted_unix_ms()).c_str());
  }
  return Status::Ok();
}

Status CancelCommand() {
  TRUSTMOE_ASSIGN_OR_RETURN(auto client, MakeClient());
  TRUSTMOE_ASSIGN_OR_RETURN(v1::JobInfo info, client->Cancel(Flags().job_id));
  if (Flags().json) {
    PrintJson(InfoJson(info));
  } else {
    std::printf("job %s %s\n", info.job_id().c_str(), info.progress().state().c_str());
  }
  return Status::Ok();
}

void PrintResult(const v1::JobInfo& info) {
  const v1::JobProgress& p = info.progress();
  std::printf("job         %s\nname        %s\nkind        %s\nstate       %s\n",
              info.job_id().c_str(), info.name().c_str(), info.kind().c_str(), p.state().c_str());
  if (!p.detail().empty()) std::printf("detail      %s\n", p.detail().c_str());
  std::printf(
      "test acc    %s\nloss        %.4f\nsteps       %llu/%llu\nverified    %llu\n"
      "rejected    %llu\nrerouted    %llu\n",
      p.test_accuracy() >= 0 ? Percent(p.test_accuracy()).c_str() : "-", p.loss(),
      static_cast<unsigned long long>(p.step()), static_cast<unsigned long long>(p.steps_total()),
      static_cast<unsigned long long>(p.verified()), static_cast<unsigned long long>(p.rejected()),
      static_cast<unsigned long long>(p.rerouted()));
  if (!info.manifest_cid().empty()) std::printf("manifest    %s\n", info.manifest_cid().c_str());
  if (!info.predictions_cid().empty()) {
    std::printf("predictions %s\n", info.predictions_cid().c_str());
  }
  std::printf("submitted   %s\nfinished    %s\n", TimeText(info.submitted_unix_ms()).c_str(),
              TimeText(info.finished_unix_ms()).c_str());
}

// Downloads the job's manifest or predictions from the store, verified against the CID.
Status DownloadOutput(const v1::JobInfo& info, const std::string& path) {
  const std::string cid_text = OutputCid(info);
  if (cid_text.empty()) {
    return Status::FailedPrecondition("job " + info.job_id() + " is " + info.progress().state() +
                                      " and has no output to download");
  }
  auto cid = crypto::Cid::Parse(cid_text);
  if (!cid.ok()) return cid.status().WithContext("the gate's output CID '" + cid_text + "'");
  storage::StoreClientOptions options;
  options.endpoints = Flags().store_endpoints;
  if (options.endpoints.empty()) {
    options.endpoints = SplitCommas(FromEnv("", "TRUSTMOE_STORE"));
    if (options.endpoints.empty()) options.endpoints = {"127.0.0.1:7400"};
  }
  TRUSTMOE_ASSIGN_OR_RETURN(options.transport, TransportFromFlags());
  options.rounds_max = 2;
  TRUSTMOE_ASSIGN_OR_RETURN(auto store, storage::StoreClient::Create(std::move(options)));
  Progress progress("get");
  Status got = store->GetToFile(*cid, path, [&](uint64_t d, uint64_t t) { progress.Update(d, t); });
  progress.Finish();
  return got;
}

Status ResultCommand() {
  TRUSTMOE_ASSIGN_OR_RETURN(auto client, MakeClient());
  TRUSTMOE_ASSIGN_OR_RETURN(v1::JobInfo info, client->Get(Flags().job_id));
  const std::string& out = Flags().out_file;
  if (!out.empty()) TRUSTMOE_RETURN_IF_ERROR(DownloadOutput(info, out));
  if (Flags().json) {
    ordered_json j = InfoJson(info);
    if (!out.empty()) j["output_file"] = out;
    PrintJson(j);
    return Status::Ok();
  }
  PrintResult(info);
  if (!out.empty()) std::printf("wrote %s (verified)\n", out.c_str());
  return Status::Ok();
}

}  // namespace

void AddJobCommands(CLI::App& app, Action* run) {
  JobFlags& flags = Flags();
  auto* job = app.add_subcommand("job", "Submit, follow and cancel training and inference jobs");
  job->require_subcommand(1);
  job->fallthrough();
  job->add_option("--gate", flags.gate, "Gate endpoint host:port (default: $TRUSTMOE_GATE)");
  job->add_option("--key", flags.key_file, "Researcher key that signs requests (or $TRUSTMOE_KEY)");
  job->add_option("--genesis", flags.genesis_file,
                  "Genesis file; requests are signed for its chain id (or $TRUSTMOE_GENESIS)");
  job->add_option("--store", flags.store_endpoints,
                  "result -o: store endpoint host:port, repeatable (default: $TRUSTMOE_STORE "
                  "or 127.0.0.1:7400)");
  job->add_option("--tls-mode", flags.tls_mode, "plaintext, tls or mtls")
      ->check(CLI::IsMember({"plaintext", "tls", "mtls"}));
  job->add_option("--tls-ca", flags.tls_ca, "Cluster CA certificate (tls, mtls)");
  job->add_option("--tls-cert", flags.tls_cert, "Client certificate (mtls)");
  job->add_option("--tls-key", flags.tls_key, "Client certificate key (mtls)");
  job->add_option("--tls-server-name", flags.tls_server_name,
                  "Name expected in the gate's (and store's) certificate");
  job->add_option("--timeout-ms", flags.timeout_ms, "Deadline of each request (default 30000)")
      ->check(CLI::Range(1u, 3'600'000u));
  job->add_flag("--json", flags.json, "Machine-readable output");

  auto* submit = job->add_subcommand("submit", "Submit a job spec (TOML); prints the job id");
  submit->add_option("SPEC", flags.spec_file, "Job spec, e.g. examples/jobs/fmnist-moe.toml")
      ->required();
  submit->add_flag("--watch", flags.watch, "Follow the job until it ends (as `job watch`)");
  submit->callback([run] { *run = SubmitCommand; });

  auto* watch = job->add_subcommand(
      "watch", "Follow a job's progress until it ends; exit 0 when it completed, 1 otherwise");
  watch->add_option("ID", flags.job_id, "Job id (as printed by submit)")->required();
  watch->callback([run] { *run = WatchCommand; });

  auto* list = job->add_subcommand("list", "Your jobs on this gate, newest first");
  list->callback([run] { *run = ListCommand; });

  auto* cancel = job->add_subcommand("cancel", "Stop a queued or running job");
  cancel->add_option("ID", flags.job_id, "Job id")->required();
  cancel->callback([run] { *run = CancelCommand; });

  auto* result = job->add_subcommand(
      "result", "A job's outcome: state, accuracy, loss, steps, verdicts, output CID");
  result->add_option("ID", flags.job_id, "Job id")->required();
  result->add_option("-o,--out", flags.out_file,
                     "Download the model manifest (training) or predictions (inference) from "
                     "the store, verified, into FILE");
  result->callback([run] { *run = ResultCommand; });
}

}  // namespace trustmoe::cli
