#include "common/config.h"

#include <fmt/format.h>

#include <toml++/toml.h>

#include <limits>
#include <map>
#include <optional>
#include <tuple>

#include "common/files.h"

namespace trustmoe {

namespace {

constexpr uint64_t kConfigBytesMax = 1 << 20;

std::string_view TypeName(toml::node_type type) {
  switch (type) {
    case toml::node_type::none:
      return "nothing";
    case toml::node_type::table:
      return "table";
    case toml::node_type::array:
      return "array";
    case toml::node_type::string:
      return "string";
    case toml::node_type::integer:
      return "integer";
    case toml::node_type::floating_point:
      return "float";
    case toml::node_type::boolean:
      return "boolean";
    case toml::node_type::date:
      return "date";
    case toml::node_type::time:
      return "time";
    case toml::node_type::date_time:
      return "date-time";
  }
  return "unknown";
}

// "file:line", or "file" when the position is unknown.
std::string At(const std::string& source, const toml::source_region& region) {
  if (region.begin.line == 0) return source;
  return fmt::format("{}:{}", source, region.begin.line);
}

std::string SectionPhrase(const std::string& section) {
  return section.empty() ? "at top level" : "in [" + section + "]";
}

std::string Join(const std::string& section, std::string_view key) {
  return section.empty() ? std::string(key) : section + "." + std::string(key);
}

}  // namespace

struct ConfigTable::Shared {
  std::string source;
  toml::table root;
  toml::table empty;  // what Table() hands out for an absent key
  // Keys asked for, per table, for CheckNoUnknownKeys.
  std::map<const toml::table*, std::set<std::string, std::less<>>> read;
};

ConfigTable::ConfigTable(std::shared_ptr<Shared> shared, const toml::table* table,
                         std::string section)
    : shared_(std::move(shared)), table_(table), section_(std::move(section)) {
  source_ = std::shared_ptr<std::string>(shared_, &shared_->source);
}

ConfigTable::ConfigTable(ConfigTable&&) noexcept = default;
ConfigTable& ConfigTable::operator=(ConfigTable&&) noexcept = default;
ConfigTable::~ConfigTable() = default;

Result<ConfigTable> ConfigTable::LoadFile(const std::string& path) {
  Result<std::string> text = ReadFile(path, kConfigBytesMax);
  if (!text.ok()) return text.status().WithContext("config");
  return Parse(*text, path);
}

Result<ConfigTable> ConfigTable::Parse(std::string_view text, std::string source_name) {
  if (text.size() > kConfigBytesMax) {
    return Status::ResourceExhausted(
        fmt::format("{}: config is larger than {} bytes", source_name, kConfigBytesMax));
  }
  auto shared = std::make_shared<Shared>();
  shared->source = std::move(source_name);
  try {
    shared->root = toml::parse(text, shared->source);
  } catch (const toml::parse_error& e) {
    return Status::InvalidArgument(fmt::format("{}:{}:{}: {}", shared->source,
                                               e.source().begin.line, e.source().begin.column,
                                               e.description()));
  }
  const toml::table* root = &shared->root;
  return ConfigTable(std::move(shared), root, "");
}

bool ConfigTable::Has(std::string_view key) const { return table_->contains(key); }

const toml::node* ConfigTable::Lookup(std::string_view key) {
  const toml::node* node = table_->get(key);
  if (node != nullptr) shared_->read[table_].emplace(key);
  return node;
}

std::string ConfigTable::FullName(std::string_view key) const { return Join(section_, key); }

std::string ConfigTable::Where(std::string_view key) const {
  auto it = table_->find(key);
  if (it == table_->end()) return source();
  if (it->first.source().begin.line != 0) return At(source(), it->first.source());
  return At(source(), it->second.source());
}

Status ConfigTable::WrongType(std::string_view key, const toml::node& node,
                              std::string_view expected) const {
  return Status::InvalidArgument(fmt::format("{}: '{}' must be {}, got {}", Where(key),
                                             FullName(key), expected, TypeName(node.type())));
}

Status ConfigTable::MissingKey(std::string_view key) const {
  return Status::InvalidArgument(
      fmt::format("{}: missing required key '{}' {}", source(), key, SectionPhrase(section_)));
}

Status ConfigTable::Get(std::string_view key, std::string* out) {
  const toml::node* node = Lookup(key);
  if (node == nullptr) return Status::Ok();
  if (!node->is_string()) return WrongType(key, *node, "a string");
  *out = node->as_string()->get();
  return Status::Ok();
}

Status ConfigTable::Get(std::string_view key, bool* out) {
  const toml::node* node = Lookup(key);
  if (node == nullptr) return Status::Ok();
  if (!node->is_boolean()) return WrongType(key, *node, "a boolean");
  *out = node->as_boolean()->get();
  return Status::Ok();
}

Status ConfigTable::Get(std::string_view key, int64_t* out) {
  const toml::node* node = Lookup(key);
  if (node == nullptr) return Status::Ok();
  if (!node->is_integer()) return WrongType(key, *node, "an integer");
  *out = node->as_integer()->get();
  return Status::Ok();
}

Status ConfigTable::GetInRange(std::string_view key, int64_t min, int64_t max, int64_t* out) {
  int64_t v = 0;
  TRUSTMOE_RETURN_IF_ERROR(Get(key, &v));
  if (v < min) {
    return Status::InvalidArgument(
        fmt::format("{}: '{}' must be >= {}, got {}", Where(key), FullName(key), min, v));
  }
  if (v > max) {
    return Status::InvalidArgument(
        fmt::format("{}: '{}' must be <= {}, got {}", Where(key), FullName(key), max, v));
  }
  *out = v;
  return Status::Ok();
}

Status ConfigTable::Get(std::string_view key, uint64_t* out) {
  // TOML integers are signed 64-bit, so only the lower bound can fail.
  int64_t v = 0;
  if (!Has(key)) return Status::Ok();
  TRUSTMOE_RETURN_IF_ERROR(GetInRange(key, 0, std::numeric_limits<int64_t>::max(), &v));
  *out = static_cast<uint64_t>(v);
  return Status::Ok();
}

Status ConfigTable::Get(std::string_view key, uint32_t* out) {
  int64_t v = 0;
  if (!Has(key)) return Status::Ok();
  TRUSTMOE_RETURN_IF_ERROR(GetInRange(key, 0, std::numeric_limits<uint32_t>::max(), &v));
  *out = static_cast<uint32_t>(v);
  return Status::Ok();
}

Status ConfigTable::Get(std::string_view key, int* out) {
  int64_t v = 0;
  if (!Has(key)) return Status::Ok();
  TRUSTMOE_RETURN_IF_ERROR(
      GetInRange(key, std::numeric_limits<int>::min(), std::numeric_limits<int>::max(), &v));
  *out = static_cast<int>(v);
  return Status::Ok();
}

Status ConfigTable::Get(std::string_view key, double* out) {
  const toml::node* node = Lookup(key);
  if (node == nullptr) return Status::Ok();
  if (node->is_integer()) {
    *out = static_cast<double>(node->as_integer()->get());
  } else if (node->is_floating_point()) {
    *out = node->as_floating_point()->get();
  } else {
    return WrongType(key, *node, "a number");
  }
  return Status::Ok();
}

Status ConfigTable::Get(std::string_view key, std::vector<std::string>* out) {
  const toml::node* node = Lookup(key);
  if (node == nullptr) return Status::Ok();
  if (!node->is_array()) return WrongType(key, *node, "an array of strings");
  std::vector<std::string> values;
  for (const toml::node& element : *node->as_array()) {
    if (!element.is_string()) {
      return Status::InvalidArgument(
          fmt::format("{}: '{}' must be an array of strings, got an array containing {}",
                      At(source(), element.source()), FullName(key), TypeName(element.type())));
    }
    values.push_back(element.as_string()->get());
  }
  *out = std::move(values);
  return Status::Ok();
}

Result<ConfigTable> ConfigTable::Table(std::string_view key) {
  const toml::node* node = Lookup(key);
  if (node == nullptr) return ConfigTable(shared_, &shared_->empty, FullName(key));
  if (!node->is_table()) return WrongType(key, *node, "a table");
  return ConfigTable(shared_, node->as_table(), FullName(key));
}

Status ConfigTable::CheckNoUnknownKeys() const {
  // Every unknown key is found, and the first in the file is reported.
  std::optional<std::tuple<uint32_t, uint32_t, std::string>> first;
  std::vector<std::pair<const toml::table*, std::string>> pending = {{table_, section_}};
  while (!pending.empty()) {
    auto [table, section] = std::move(pending.back());
    pending.pop_back();
    auto read_it = shared_->read.find(table);
    for (const auto& [key, value] : *table) {
      const bool read = read_it != shared_->read.end() && read_it->second.count(key.str()) != 0;
      if (read) {
        if (value.is_table()) pending.emplace_back(value.as_table(), Join(section, key.str()));
        continue;
      }
      const toml::source_position pos = key.source().begin;
      std::tuple<uint32_t, uint32_t, std::string> found{
          pos.line, pos.column,
          fmt::format("{}: unknown key '{}' {}", At(source(), key.source()), key.str(),
                      SectionPhrase(section))};
      if (!first ||
          std::tie(pos.line, pos.column) < std::tie(std::get<0>(*first), std::get<1>(*first))) {
        first = std::move(found);
      }
    }
  }
  if (first) return Status::InvalidArgument(std::get<2>(*first));
  return Status::Ok();
}

std::string ConfigKeyName(std::string_view section, std::string_view key) {
  if (section.empty()) return std::string(key);
  return std::string(section) + "." + std::string(key);
}

std::string ConfigAt(const ConfigTable& table, std::string_view section, std::string_view key) {
  return table.Where(key) + ": '" + ConfigKeyName(section, key) + "'";
}

}  // namespace trustmoe
