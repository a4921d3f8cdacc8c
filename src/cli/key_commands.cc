// trustmoe keygen / key pub, trustmoe cert ca / cert issue.
#include <cstdio>

#include "cli/cli.h"
#include "common/files.h"
#include "crypto/ed25519.h"
#include "crypto/x509.h"

namespace trustmoe::cli {

void AddKeyCommands(CLI::App& app, Action* run) {
  auto* keygen = app.add_subcommand("keygen", "Create an Ed25519 identity key (PEM, mode 0600)");
  static std::string out;
  static bool force = false;
  keygen->add_option("-o,--out", out, "Private key file; the public key goes to FILE.pub")
      ->required();
  keygen->add_flag("--force", force, "Overwrite existing files");
  keygen->callback([run] {
    *run = [] {
      TRUSTMOE_ASSIGN_OR_RETURN(crypto::PrivateKey key, crypto::PrivateKey::Generate());
      Status saved = key.SavePem(out, force);
      if (saved.code() == StatusCode::kAlreadyExists) {
        return Status::AlreadyExists(out + " exists: use --force to overwrite it");
      }
      TRUSTMOE_RETURN_IF_ERROR(saved);
      TRUSTMOE_RETURN_IF_ERROR(WriteFileAtomic(out + ".pub", key.public_key().ToPem(), 0644));
      std::printf("wrote %s (private, 0600) and %s.pub\npublic key: %s\n", out.c_str(),
                  out.c_str(), key.public_key().Hex().c_str());
      return Status::Ok();
    };
  });

  auto* key = app.add_subcommand("key", "Inspect keys");
  key->require_subcommand(1);
  auto* pub = key->add_subcommand("pub", "Print the public key (hex) of a private or public PEM");
  static std::string file;
  pub->add_option("FILE", file, "PEM file")->required();
  pub->callback([run] {
    *run = [] {
      auto public_key = crypto::PublicKey::LoadPem(file);
      if (!public_key.ok()) {
        TRUSTMOE_ASSIGN_OR_RETURN(crypto::PrivateKey private_key, crypto::PrivateKey::LoadPem(file));
        public_key = private_key.public_key();
      }
      std::printf("%s\n", public_key->Hex().c_str());
      return Status::Ok();
    };
  });
}

void AddCertCommands(CLI::App& app, Action* run) {
  auto* cert = app.add_subcommand("cert", "TLS certificates for the cluster (mutual TLS)");
  cert->require_subcommand(1);

  static std::string out;
  static crypto::CertOptions options;
  static bool force = false;
  auto* ca = cert->add_subcommand("ca", "Create a cluster CA: PREFIX.crt and PREFIX.key");
  ca->add_option("-o,--out", out, "Output prefix, e.g. tls/ca")->required();
  ca->add_option("--cn", options.common_name, "Common name")->default_val("TrustMoE cluster CA");
  ca->add_option("--days", options.days, "Validity in days")->default_val(3650);
  ca->add_flag("--force", force, "Overwrite existing files");

  static std::string ca_cert;
  static std::string ca_key;
  auto* issue = cert->add_subcommand("issue", "Issue a node certificate: PREFIX.crt, PREFIX.key");
  issue->add_option("--ca", ca_cert, "CA certificate (PEM)")->required();
  issue->add_option("--ca-key", ca_key, "CA private key (PEM)")->required();
  issue->add_option("--name", options.common_name, "Node name (certificate CN)")->required();
  issue->add_option("--dns", options.dns_names, "DNS names the node is reached by");
  issue->add_option("--ip", options.ip_addresses, "IP addresses the node is reached by");
  issue->add_option("--days", options.days, "Validity in days")->default_val(365);
  issue->add_option("-o,--out", out, "Output prefix, e.g. tls/store1")->required();
  issue->add_flag("--force", force, "Overwrite existing files");

  auto write_pair = [](const crypto::CertAndKey& pair) -> Status {
    if (!force) {
      for (const std::string& path : {out + ".crt", out + ".key"}) {
        if (ReadFile(path, 1).status().code() != StatusCode::kNotFound) {
          return Status::AlreadyExists(path + " exists: use --force to overwrite");
        }
      }
    }
    TRUSTMOE_RETURN_IF_ERROR(WriteFileAtomic(out + ".key", pair.key_pem, 0600));
    TRUSTMOE_RETURN_IF_ERROR(WriteFileAtomic(out + ".crt", pair.cert_pem, 0644));
    std::printf("wrote %s.crt and %s.key (0600)\n", out.c_str(), out.c_str());
    return Status::Ok();
  };
  ca->callback([run, write_pair] {
    *run = [write_pair] {
      TRUSTMOE_ASSIGN_OR_RETURN(crypto::CertAndKey pair, crypto::IssueCa(options));
      return write_pair(pair);
    };
  });
  issue->callback([run, write_pair] {
    *run = [write_pair] {
      TRUSTMOE_ASSIGN_OR_RETURN(std::string cert_pem, ReadFile(ca_cert, 1 << 20));
      TRUSTMOE_ASSIGN_OR_RETURN(std::string key_pem, ReadFile(ca_key, 1 << 20));
      TRUSTMOE_ASSIGN_OR_RETURN(crypto::CertAndKey pair,
                                crypto::IssueNodeCert(cert_pem, key_pem, options));
      return write_pair(pair);
    };
  });
}

}  // namespace trustmoe::cli
