// TOML configuration with strict checking.
//
// A daemon reads its config through ConfigTable getters, then calls CheckNoUnknownKeys(): a key
// nobody asked for is reported with file and line ("store.toml:7: unknown key 'blob_max_byte'
// in [limits]"), as is a value of the wrong type ("store.toml:3: 'listen' must be a string, got
// integer"). Getters leave the output untouched when the key is absent (defaults live in the
// caller's struct).
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace toml {
inline namespace v3 {
class node;
class table;
}  // namespace v3
}  // namespace toml

namespace trustmoe {

class ConfigTable {
 public:
  // NotFound when the file is missing; InvalidArgument "file:line:col: <parse error>" when it
  // is not valid TOML; files over 1 MiB are refused.
  static Result<ConfigTable> LoadFile(const std::string& path);
  // `source_name` is used in messages in place of a file name.
  static Result<ConfigTable> Parse(std::string_view text, std::string source_name);

  ConfigTable(ConfigTable&&) noexcept;
  ConfigTable& operator=(ConfigTable&&) noexcept;
  ~ConfigTable();

  bool Has(std::string_view key) const;

  Status Get(std::string_view key, std::string* out);
  Status Get(std::string_view key, bool* out);
  Status Get(std::string_view key, int64_t* out);
  // Negative values and values above the type's range are InvalidArgument.
  Status Get(std::string_view key, uint64_t* out);
  Status Get(std::string_view key, uint32_t* out);
  Status Get(std::string_view key, int* out);
  Status Get(std::string_view key, double* out);  // accepts integers too
  Status Get(std::string_view key, std::vector<std::string>* out);

  // Like Get, but InvalidArgument "file: missing required key 'x' in [section]" when absent.
  template <typename T>
  Status Require(std::string_view key, T* out) {
    if (!Has(key)) return MissingKey(key);
    return Get(key, out);
  }

  // The sub-table `key` (an empty table when absent; InvalidArgument when not a table).
  Result<ConfigTable> Table(std::string_view key);

  // InvalidArgument naming the first key (with file:line) in this table or any sub-table
  // obtained from it that no getter asked for.
  Status CheckNoUnknownKeys() const;

  // "file" and "file:line" helpers for messages about values that parse but are wrong.
  const std::string& source() const { return *source_; }
  std::string Where(std::string_view key) const;

 private:
  struct Shared;
  ConfigTable(std::shared_ptr<Shared> shared, const toml::table* table, std::string section);
  Status MissingKey(std::string_view key) const;
  // The value at `key` (nullptr when absent), recorded as read.
  const toml::node* Lookup(std::string_view key);
  // "key" at the top level, "section.key" in a sub-table.
  std::string FullName(std::string_view key) const;
  // "file:line: 'name' must be <expected>, got <type>".
  Status WrongType(std::string_view key, const toml::node& node, std::string_view expected) const;
  // Get(int64_t) then a range check naming the bound that failed; the caller checks Has().
  Status GetInRange(std::string_view key, int64_t min, int64_t max, int64_t* out);

  std::shared_ptr<Shared> shared_;
  const toml::table* table_;
  std::string section_;  // "" for the root, "limits", "tls.client", ...
  std::shared_ptr<std::string> source_;
};

// "section.key" (just "key" at the top level), as ConfigTable names keys in its own messages.
std::string ConfigKeyName(std::string_view section, std::string_view key);

// "file:line: 'section.key'": the start of every message about a value that parses but is
// wrong.
std::string ConfigAt(const ConfigTable& table, std::string_view section, std::string_view key);

// table.Get(key, out), then InvalidArgument "file:line: 'section.key' must be between min and
// max, got v" unless min <= value <= max; the value is left as it was when the key is absent.
template <typename T>
Status GetBounded(ConfigTable& table, std::string_view section, std::string_view key, T min,
                  T max, T* out) {
  TRUSTMOE_RETURN_IF_ERROR(table.Get(key, out));
  if (*out < min || *out > max) {
    return Status::InvalidArgument(ConfigAt(table, section, key) + " must be between " +
                                   std::to_string(min) + " and " + std::to_string(max) +
                                   ", got " + std::to_string(*out));
  }
  return Status::Ok();
}

}  // namespace trustmoe
