#include "chain/ledger/genesis.h"

#include <nlohmann/json.hpp>

#include <set>

#include "common/bytes.h"
#include "common/files.h"
#include "crypto/canonical.h"

namespace trustmoe::ledger {

namespace {

using nlohmann::json;

constexpr size_t kGenesisFileBytesMax = 1 << 20;
constexpr size_t kValidatorsMax = 1024;

bool ValidChainId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-';
    if (!ok) return false;
  }
  return true;
}

// Reads field `key` of `obj` into `out` with a type check; InvalidArgument naming the field.
template <typename T>
Status Field(const json& obj, const std::string& where, const char* key, T* out,
             bool required = true) {
  auto it = obj.find(key);
  if (it == obj.end()) {
    if (!required) return Status::Ok();
    return Status::InvalidArgument("genesis: missing field '" + where + key + "'");
  }
  try {
    if constexpr (std::is_same_v<T, std::string>) {
      if (!it->is_string()) throw std::runtime_error("must be a string");
    } else if constexpr (std::is_same_v<T, bool>) {
      if (!it->is_boolean()) throw std::runtime_error("must be true or false");
    } else if constexpr (std::is_unsigned_v<T>) {
      if (!it->is_number_unsigned()) throw std::runtime_error("must be a non-negative integer");
      if (it->template get<uint64_t>() > std::numeric_limits<T>::max()) {
        throw std::runtime_error("is too large");
      }
    } else {
      if (!it->is_number_integer()) throw std::runtime_error("must be an integer");
    }
    *out = it->template get<T>();
  } catch (const std::exception& e) {
    return Status::InvalidArgument("genesis: field '" + where + key + "' " + e.what());
  }
  return Status::Ok();
}

Status NoUnknownKeys(const json& obj, const std::string& where,
                     std::initializer_list<std::string_view> known) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    bool found = false;
    for (std::string_view k : known) found = found || it.key() == k;
    if (!found) {
      return Status::InvalidArgument("genesis: unknown field '" + where + it.key() + "'");
    }
  }
  return Status::Ok();
}

Result<crypto::PublicKey> KeyField(const json& obj, const std::string& where, const char* key) {
  std::string hex;
  TRUSTMOE_RETURN_IF_ERROR(Field(obj, where, key, &hex));
  auto parsed = crypto::PublicKey::FromHex(hex);
  if (!parsed.ok()) {
    return Status::InvalidArgument("genesis: field '" + where + key +
                                   "' is not a 64-digit hex Ed25519 public key");
  }
  return parsed;
}

}  // namespace

Status Genesis::Validate() const {
  if (!ValidChainId(chain_id)) {
    return Status::InvalidArgument("genesis: chain_id '" + chain_id +
                                   "' must be 1-64 characters of a-z 0-9 . _ -");
  }
  if (f == 0) return Status::InvalidArgument("genesis: f must be at least 1");
  if (validators.size() < 3 * static_cast<size_t>(f) + 1) {
    return Status::InvalidArgument("genesis: " + std::to_string(validators.size()) +
                                   " validators cannot tolerate f = " + std::to_string(f) +
                                   " faults (n >= 3f + 1 = " + std::to_string(3 * f + 1) + ")");
  }
  if (validators.size() > kValidatorsMax) {
    return Status::InvalidArgument("genesis: more than 1024 validators");
  }
  std::set<crypto::PublicKey> keys;
  std::set<std::string> names;
  for (size_t i = 0; i < validators.size(); ++i) {
    const GenesisValidator& v = validators[i];
    const std::string where = "genesis: validator " + std::to_string(i);
    if (v.name.empty() || v.name.size() > 64) {
      return Status::InvalidArgument(where + ": name must be 1-64 characters");
    }
    if (!names.insert(v.name).second) {
      return Status::InvalidArgument(where + ": duplicate name '" + v.name + "'");
    }
    if (!keys.insert(v.key).second) {
      return Status::InvalidArgument(where + " ('" + v.name + "'): duplicate public key");
    }
    if (v.endpoint.empty() || v.endpoint.size() > 256 ||
        v.endpoint.find(':') == std::string::npos) {
      return Status::InvalidArgument(where + " ('" + v.name +
                                     "'): endpoint must be host:port");
    }
  }
  const ChainParams& p = params;
  if (p.checkpoint_interval == 0 || p.watermark_window < 2 * p.checkpoint_interval ||
      p.watermark_window % p.checkpoint_interval != 0 || p.watermark_window > 4096) {
    return Status::InvalidArgument(
        "genesis: watermark_window must be a multiple of checkpoint_interval, at least twice "
        "it and at most 4096");
  }
  if (p.block_txs_max == 0 || p.block_txs_max > 100000) {
    return Status::InvalidArgument("genesis: block_txs_max must be 1..100000");
  }
  if (p.tx_bytes_max < 256 || p.tx_bytes_max > (4u << 20)) {
    return Status::InvalidArgument("genesis: tx_bytes_max must be 256 B .. 4 MiB");
  }
  if (p.block_bytes_max < p.tx_bytes_max || p.block_bytes_max > (64ull << 20)) {
    return Status::InvalidArgument("genesis: block_bytes_max must be tx_bytes_max .. 64 MiB");
  }
  if (p.view_change_timeout_ms < 100 || p.view_change_timeout_ms > 600000) {
    return Status::InvalidArgument("genesis: view_change_timeout_ms must be 100 .. 600000");
  }
  if (p.max_clock_skew_ms < 0 || p.max_clock_skew_ms > 3600000) {
    return Status::InvalidArgument("genesis: max_clock_skew_ms must be 0 .. 3600000");
  }
  if (p.strike_threshold == 0) {
    return Status::InvalidArgument("genesis: strike_threshold must be at least 1");
  }
  if (p.fault_threshold == 0) {
    return Status::InvalidArgument("genesis: fault_threshold must be at least 1");
  }
  if (p.verify_rows_min == 0 || p.verify_rows_min > 1000000) {
    return Status::InvalidArgument("genesis: verify_rows_min must be 1 .. 1000000");
  }
  if (p.verify_fraction_ppm > 1000000) {
    return Status::InvalidArgument("genesis: verify_fraction_ppm must be 0 .. 1000000");
  }
  if (p.verify_deadline_ms < 100 || p.verify_deadline_ms > 3600000) {
    return Status::InvalidArgument("genesis: verify_deadline_ms must be 100 .. 3600000");
  }
  if (p.verify_update_fraction_ppm > 1000000) {
    return Status::InvalidArgument("genesis: verify_update_fraction_ppm must be 0 .. 1000000");
  }
  for (auto [name, v] : {std::pair{"tolerance_f32_ppm", p.tolerance_f32_ppm},
                         std::pair{"tolerance_bf16_ppm", p.tolerance_bf16_ppm},
                         std::pair{"tolerance_f16_ppm", p.tolerance_f16_ppm},
                         std::pair{"tolerance_update_ppm", p.tolerance_update_ppm}}) {
    if (v == 0 || v > 1000000) {
      return Status::InvalidArgument(std::string("genesis: ") + name + " must be 1 .. 1000000");
    }
  }
  return PbftConfig().Validate().WithContext("genesis");
}

Bytes Genesis::Canonical() const {
  crypto::CanonicalWriter w(kGenesisDomain);
  w.Str(chain_id).I64(created_unix_ms).U32(f).Blob(admin_key.bytes());
  w.U32(static_cast<uint32_t>(validators.size()));
  for (const GenesisValidator& v : validators) w.Str(v.name).Blob(v.key.bytes()).Str(v.endpoint);
  w.U64(params.checkpoint_interval).U64(params.watermark_window).U64(params.block_txs_max);
  w.U64(params.block_bytes_max).U64(params.tx_bytes_max).I64(params.view_change_timeout_ms);
  w.I64(params.max_clock_skew_ms).U64(params.strike_threshold).U64(params.fault_threshold);
  w.U64(params.verify_rows_min).U64(params.verify_fraction_ppm).I64(params.verify_deadline_ms);
  w.U64(params.tolerance_f32_ppm).U64(params.tolerance_bf16_ppm).U64(params.tolerance_f16_ppm);
  w.U64(params.verify_update_fraction_ppm).U64(params.tolerance_update_ppm);
  return w.Take();
}

Digest Genesis::Hash() const { return crypto::Sha256::Hash(Canonical()); }

std::string Genesis::ToJson() const {
  json j;
  j["chain_id"] = chain_id;
  j["created_unix_ms"] = created_unix_ms;
  j["f"] = f;
  j["admin_key"] = ToHex(admin_key.bytes());
  json vs = json::array();
  for (const GenesisValidator& v : validators) {
    vs.push_back({{"name", v.name}, {"public_key", ToHex(v.key.bytes())}, {"endpoint", v.endpoint}});
  }
  j["validators"] = vs;
  j["params"] = {{"checkpoint_interval", params.checkpoint_interval},
                 {"watermark_window", params.watermark_window},
                 {"block_txs_max", params.block_txs_max},
                 {"block_bytes_max", params.block_bytes_max},
                 {"tx_bytes_max", params.tx_bytes_max},
                 {"view_change_timeout_ms", params.view_change_timeout_ms},
                 {"max_clock_skew_ms", params.max_clock_skew_ms},
                 {"strike_threshold", params.strike_threshold},
                 {"fault_threshold", params.fault_threshold},
                 {"verify_rows_min", params.verify_rows_min},
                 {"verify_fraction_ppm", params.verify_fraction_ppm},
                 {"verify_deadline_ms", params.verify_deadline_ms},
                 {"tolerance_f32_ppm", params.tolerance_f32_ppm},
                 {"tolerance_bf16_ppm", params.tolerance_bf16_ppm},
                 {"tolerance_f16_ppm", params.tolerance_f16_ppm},
                 {"verify_update_fraction_ppm", params.verify_update_fraction_ppm},
                 {"tolerance_update_ppm", params.tolerance_update_ppm}};
  return j.dump(2) + "\n";
}

Result<Genesis> Genesis::FromJson(std::string_view text) {
  if (text.size() > kGenesisFileBytesMax) {
    return Status::InvalidArgument("genesis: file is larger than 1 MiB");
  }
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::InvalidArgument("genesis: not valid JSON");
  if (!j.is_object()) return Status::InvalidArgument("genesis: top level must be an object");
  TRUSTMOE_RETURN_IF_ERROR(NoUnknownKeys(
      j, "", {"chain_id", "created_unix_ms", "f", "admin_key", "validators", "params"}));
  Genesis g;
  TRUSTMOE_RETURN_IF_ERROR(Field(j, "", "chain_id", &g.chain_id));
  TRUSTMOE_RETURN_IF_ERROR(Field(j, "", "created_unix_ms", &g.created_unix_ms));
  TRUSTMOE_RETURN_IF_ERROR(Field(j, "", "f", &g.f));
  TRUSTMOE_ASSIGN_OR_RETURN(g.admin_key, KeyField(j, "", "admin_key"));
  auto vs = j.find("validators");
  if (vs == j.end() || !vs->is_array()) {
    return Status::InvalidArgument("genesis: 'validators' must be an array");
  }
  if (vs->size() > kValidatorsMax) {
    return Status::InvalidArgument("genesis: more than 1024 validators");
  }
  for (size_t i = 0; i < vs->size(); ++i) {
    const json& v = (*vs)[i];
    const std::string where = "validators[" + std::to_string(i) + "].";
    if (!v.is_object()) return Status::InvalidArgument("genesis: " + where + " is not an object");
    TRUSTMOE_RETURN_IF_ERROR(NoUnknownKeys(v, where, {"name", "public_key", "endpoint"}));
    GenesisValidator gv;
    TRUSTMOE_RETURN_IF_ERROR(Field(v, where, "name", &gv.name));
    TRUSTMOE_ASSIGN_OR_RETURN(gv.key, KeyField(v, where, "public_key"));
    TRUSTMOE_RETURN_IF_ERROR(Field(v, where, "endpoint", &gv.endpoint));
    g.validators.push_back(std::move(gv));
  }
  auto ps = j.find("params");
  if (ps != j.end()) {
    if (!ps->is_object()) return Status::InvalidArgument("genesis: 'params' must be an object");
    const std::string where = "params.";
    TRUSTMOE_RETURN_IF_ERROR(NoUnknownKeys(
        *ps, where,
        {"checkpoint_interval", "watermark_window", "block_txs_max", "block_bytes_max",
         "tx_bytes_max", "view_change_timeout_ms", "max_clock_skew_ms", "strike_threshold",
         "fault_threshold", "verify_rows_min", "verify_fraction_ppm", "verify_deadline_ms",
         "tolerance_f32_ppm", "tolerance_bf16_ppm", "tolerance_f16_ppm",
         "verify_update_fraction_ppm", "tolerance_update_ppm"}));
    ChainParams& p = g.params;
    TRUSTMOE_RETURN_IF_ERROR(Field(*ps, where, "checkpoint_interval", &p.checkpoint_interval, false));
    TRUSTMOE_RETURN_IF_ERROR(Field(*ps, where, "watermark_window", &p.watermark_window, false));
    TRUSTMOE_RETURN_IF_ERROR(Field(*ps, where, "block_txs_max", &p.block_txs_max, false));
    TRUSTMOE_RETURN_IF_ERROR(Field(*ps, where, "block_bytes_max", &p.block_bytes_max, false));
    TRUSTMOE_RETURN_IF_ERROR(Field(*ps, where, "tx_bytes_max", &p.tx_bytes_max, false));
    TRUSTMOE_RETURN_IF_ERROR(
        Field(*ps, where, "view_change_timeout_ms", &p.view_change_timeout_ms, false));
    TRUSTMOE_RETURN_IF_ERROR(Field(*ps, where, "max_clock_skew_ms", &p.max_clock_skew_ms, false));
    TRUSTMOE_RETURN_IF_ERROR(Field(*ps, where, "strike_threshold", &p.strike_threshold, false));
    TRUSTMOE_RETURN_IF_ERROR(Field(*ps, where, "fault_threshold", &p.fault_threshold, false));
    TRUSTMOE_RETURN_IF_ERROR(Field(*ps, where, "verify_rows_min", &p.verify_rows_min, false));
    TRUSTMOE_RETURN_IF_ERROR(
        Field(*ps, where, "verify_fraction_ppm", &p.verify_fraction_ppm, false));
    TRUSTMOE_RETURN_IF_ERROR(
        Field(*ps, where, "verify_deadline_ms", &p.verify_deadline_ms, false));
    TRUSTMOE_RETURN_IF_ERROR(Field(*ps, where, "tolerance_f32_ppm", &p.tolerance_f32_ppm, false));
    TRUSTMOE_RETURN_IF_ERROR(
        Field(*ps, where, "tolerance_bf16_ppm", &p.tolerance_bf16_ppm, false));
    TRUSTMOE_RETURN_IF_ERROR(Field(*ps, where, "tolerance_f16_ppm", &p.tolerance_f16_ppm, false));
    TRUSTMOE_RETURN_IF_ERROR(
        Field(*ps, where, "verify_update_fraction_ppm", &p.verify_update_fraction_ppm, false));
    TRUSTMOE_RETURN_IF_ERROR(
        Field(*ps, where, "tolerance_update_ppm", &p.tolerance_update_ppm, false));
  }
  TRUSTMOE_RETURN_IF_ERROR(g.Validate());
  return g;
}

Result<Genesis> Genesis::Load(const std::string& path) {
  auto text = ReadFile(path, kGenesisFileBytesMax);
  if (!text.ok()) return text.status().WithContext("genesis file " + path);
  auto g = FromJson(std::string_view(reinterpret_cast<const char*>(text.value().data()),
                                     text.value().size()));
  if (!g.ok()) return g.status().WithContext(path);
  return g;
}

ValidatorSet Genesis::Validators() const {
  ValidatorSet set;
  for (const GenesisValidator& v : validators) set.keys.push_back(v.key);
  set.f = f;
  return set;
}

pbft::Config Genesis::PbftConfig() const {
  pbft::Config c;
  for (const GenesisValidator& v : validators) c.validators.push_back(v.key);
  c.f = f;
  c.checkpoint_interval = params.checkpoint_interval;
  c.watermark_window = params.watermark_window;
  c.block_txs_max = params.block_txs_max;
  c.block_bytes_max = params.block_bytes_max;
  c.tx_bytes_max = params.tx_bytes_max;
  c.view_change_timeout_ms = params.view_change_timeout_ms;
  c.request_txs_max = params.block_txs_max;
  // A new-view carries up to a window of blocks.
  c.message_bytes_max = std::max<uint64_t>(c.message_bytes_max, c.MessageBytesNeeded());
  return c;
}

int Genesis::ValidatorId(const crypto::PublicKey& key) const {
  for (size_t i = 0; i < validators.size(); ++i) {
    if (validators[i].key == key) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace trustmoe::ledger
