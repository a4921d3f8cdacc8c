// trustmoe store put | get | stat | pin | unpin | ls
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "cli/cli.h"
#include "crypto/ed25519.h"
#include "storage/store_client.h"

namespace trustmoe::cli {
namespace {

struct StoreFlags {
  std::vector<std::string> endpoints;
  std::string key_file;
  std::string tls_mode = "plaintext";
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  bool json = false;
};

StoreFlags& Flags() {
  static StoreFlags flags;
  return flags;
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

Result<std::unique_ptr<storage::StoreClient>> MakeClient(bool need_key) {
  StoreFlags& flags = Flags();
  storage::StoreClientOptions options;
  options.endpoints = flags.endpoints;
  if (options.endpoints.empty()) {
    const char* env = std::getenv("TRUSTMOE_STORE");
    options.endpoints = SplitCommas(env ? env : "127.0.0.1:7400");
  }
  TRUSTMOE_ASSIGN_OR_RETURN(options.transport.mode, net::ParseTlsMode(flags.tls_mode));
  options.transport.ca_file = flags.tls_ca;
  options.transport.cert_file = flags.tls_cert;
  options.transport.key_file = flags.tls_key;
  options.transport.server_name_override = flags.tls_server_name;
  options.rounds_max = 2;
  std::string key_file = flags.key_file;
  if (key_file.empty() && std::getenv("TRUSTMOE_KEY")) key_file = std::getenv("TRUSTMOE_KEY");
  if (need_key) {
    if (key_file.empty()) {
      return Status::InvalidArgument(
          "this command signs with a writer key: pass --key FILE or set TRUSTMOE_KEY "
          "(create one with `trustmoe keygen -o FILE`)");
    }
    TRUSTMOE_ASSIGN_OR_RETURN(crypto::PrivateKey key, crypto::PrivateKey::LoadPem(key_file));
    options.writer = std::make_shared<const crypto::PrivateKey>(std::move(key));
  }
  return storage::StoreClient::Create(std::move(options));
}

nlohmann::json BlobJson(const storage::StoredBlob& blob) {
  return {{"cid", blob.cid.ToString()},
          {"size", blob.size},
          {"chunks", blob.chunk_count},
          {"pinned", blob.pinned},
          {"created_unix_ms", blob.created_unix_ms}};
}

void PrintBlob(const storage::StoredBlob& blob) {
  if (Flags().json) {
    std::printf("%s\n", BlobJson(blob).dump().c_str());
    return;
  }
  std::printf("cid      %s\nsize     %llu (%s)\nchunks   %llu\npinned   %s\n",
              blob.cid.ToString().c_str(), static_cast<unsigned long long>(blob.size),
              HumanBytes(blob.size).c_str(), static_cast<unsigned long long>(blob.chunk_count),
              blob.pinned ? "yes" : "no");
}

Result<crypto::Cid> ParseCidArg(const std::string& text) {
  auto cid = crypto::Cid::Parse(text);
  if (!cid.ok()) return cid.status().WithContext("argument CID '" + text + "'");
  return cid;
}

}  // namespace

void AddStoreCommands(CLI::App& app, Action* run) {
  StoreFlags& flags = Flags();
  auto* store = app.add_subcommand("store", "Put, get and manage blobs in trustmoe-store");
  store->require_subcommand(1);
  store->fallthrough();
  store->add_option("--store", flags.endpoints,
                    "Store endpoint host:port, repeatable (default: $TRUSTMOE_STORE or "
                    "127.0.0.1:7400)");
  store->add_option("--key", flags.key_file, "Writer key for put/pin/unpin (or $TRUSTMOE_KEY)");
  store->add_option("--tls-mode", flags.tls_mode, "plaintext, tls or mtls")
      ->check(CLI::IsMember({"plaintext", "tls", "mtls"}));
  store->add_option("--tls-ca", flags.tls_ca, "Cluster CA certificate (tls, mtls)");
  store->add_option("--tls-cert", flags.tls_cert, "Client certificate (mtls)");
  store->add_option("--tls-key", flags.tls_key, "Client certificate key (mtls)");
  store->add_option("--tls-server-name", flags.tls_server_name,
                    "Name expected in the store's certificate");
  store->add_flag("--json", flags.json, "Machine-readable output");

  static std::string file;
  static std::string cid_text;
  static bool pin = false;
  auto* put = store->add_subcommand("put", "Upload a file; prints its CID");
  put->add_option("FILE", file, "File to upload")->required();
  put->add_flag("--pin", pin, "Pin it (never garbage-collected)");
  put->callback([run] {
    *run = [] {
      TRUSTMOE_ASSIGN_OR_RETURN(auto client, MakeClient(true));
      Progress progress("put");
      auto blob = client->PutFile(file, pin, [&](uint64_t d, uint64_t t) { progress.Update(d, t); });
      progress.Finish();
      if (!blob.ok()) return blob.status();
      if (Flags().json) {
        nlohmann::json j = BlobJson(*blob);
        j["already_stored"] = blob->already_stored;
        std::printf("%s\n", j.dump().c_str());
      } else {
        std::printf("%s\n", blob->cid.ToString().c_str());
      }
      return Status::Ok();
    };
  });

  static std::string out;
  auto* get = store->add_subcommand("get", "Download a blob, verified chunk by chunk");
  get->add_option("CID", cid_text, "sha256-tree:<hex>")->required();
  get->add_option("-o,--out", out, "Output file")->required();
  get->callback([run] {
    *run = [] {
      TRUSTMOE_ASSIGN_OR_RETURN(crypto::Cid cid, ParseCidArg(cid_text));
      TRUSTMOE_ASSIGN_OR_RETURN(auto client, MakeClient(false));
      Progress progress("get");
      Status s = client->GetToFile(cid, out, [&](uint64_t d, uint64_t t) { progress.Update(d, t); });
      progress.Finish();
      if (s.ok() && !Flags().json) std::printf("wrote %s (verified)\n", out.c_str());
      return s;
    };
  });

  auto* stat = store->add_subcommand("stat", "Show a blob's size, chunks and pin");
  stat->add_option("CID", cid_text, "sha256-tree:<hex>")->required();
  stat->callback([run] {
    *run = [] {
      TRUSTMOE_ASSIGN_OR_RETURN(crypto::Cid cid, ParseCidArg(cid_text));
      TRUSTMOE_ASSIGN_OR_RETURN(auto client, MakeClient(false));
      TRUSTMOE_ASSIGN_OR_RETURN(storage::StoredBlob blob, client->Stat(cid));
      PrintBlob(blob);
      return Status::Ok();
    };
  });

  for (bool pinning : {true, false}) {
    auto* cmd = store->add_subcommand(pinning ? "pin" : "unpin",
                                      pinning ? "Keep a blob from garbage collection"
                                              : "Let a blob be garbage-collected");
    cmd->add_option("CID", cid_text, "sha256-tree:<hex>")->required();
    cmd->callback([run, pinning] {
      *run = [pinning] {
        TRUSTMOE_ASSIGN_OR_RETURN(crypto::Cid cid, ParseCidArg(cid_text));
        TRUSTMOE_ASSIGN_OR_RETURN(auto client, MakeClient(true));
        TRUSTMOE_ASSIGN_OR_RETURN(storage::StoredBlob blob,
                                  pinning ? client->Pin(cid) : client->Unpin(cid));
        PrintBlob(blob);
        return Status::Ok();
      };
    });
  }

  static bool pinned_only = false;
  static uint32_t limit = 0;
  auto* ls = store->add_subcommand("ls", "List stored blobs");
  ls->add_flag("--pinned", pinned_only, "Only pinned blobs");
  ls->add_option("--limit", limit, "At most this many (default: all)");
  ls->callback([run] {
    *run = [] {
      TRUSTMOE_ASSIGN_OR_RETURN(auto client, MakeClient(false));
      nlohmann::json all = nlohmann::json::array();
      std::string after;
      uint64_t shown = 0;
      if (!Flags().json) std::printf("%-76s %12s %6s\n", "CID", "SIZE", "PINNED");
      do {
        TRUSTMOE_ASSIGN_OR_RETURN(storage::ListPage page, client->List(after, 500, pinned_only));
        for (const storage::StoredBlob& blob : page.blobs) {
          if (limit != 0 && shown == limit) break;
          ++shown;
          if (Flags().json) {
            all.push_back(BlobJson(blob));
          } else {
            std::printf("%-76s %12llu %6s\n", blob.cid.ToString().c_str(),
                        static_cast<unsigned long long>(blob.size), blob.pinned ? "yes" : "no");
          }
        }
        after = page.next_after_cid;
      } while (!after.empty() && (limit == 0 || shown < limit));
      if (Flags().json) std::printf("%s\n", all.dump().c_str());
      return Status::Ok();
    };
  });
}

}  // namespace trustmoe::cli
