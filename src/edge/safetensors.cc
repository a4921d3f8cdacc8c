#include "edge/safetensors.h"

#include <algorithm>
#include <limits>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/check.h"

namespace trustmoe::edge {

namespace {

using nlohmann::json;

constexpr uint64_t kLengthBytes = 8;
constexpr size_t kRankMax = 4;
// Top-level object (0), tensor entry or metadata (1), shape or offsets array (2).
constexpr int kJsonNestingMax = 3;
constexpr std::string_view kMetadataKey = "__metadata__";

Status TensorError(std::string_view name, std::string_view problem) {
  return Status::InvalidArgument("safetensors: tensor " + QuoteForMessage(name) + ": " +
                                 std::string(problem));
}

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<uint8_t>(s[i]);
    size_t extra;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      extra = 1, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      extra = 2, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      extra = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i <= extra) return false;
    for (size_t k = 1; k <= extra; ++k) {
      auto cc = static_cast<uint8_t>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = cp << 6 | (cc & 0x3f);
    }
    static constexpr uint32_t kMinForExtra[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMinForExtra[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += extra + 1;
  }
  return true;
}

uint64_t ReadLittleEndian64(ByteSpan data) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | data[i];
  return v;
}

// What the parser callback saw. nlohmann keeps only the last of duplicate keys, so duplicates
// are found here, as the keys stream by: one set of seen keys per object being parsed.
struct HeaderScan {
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate_key;
  bool has_duplicate = false;
  bool too_deep = false;
};

Result<json> ParseHeaderJson(std::string_view header) {
  // nlohmann stops at a NUL byte as if the input ended there, which would let anything follow
  // it; valid JSON has no raw NUL (inside strings it must be escaped).
  if (size_t nul = header.find('\0'); nul != std::string_view::npos) {
    return Status::InvalidArgument("safetensors: header is not valid JSON (NUL byte at offset " +
                                   std::to_string(nul) + ")");
  }
  HeaderScan scan;
  json::parser_callback_t callback = [&scan](int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        if (depth >= kJsonNestingMax) scan.too_deep = true;
        scan.open_objects.emplace_back();
        break;
      case json::parse_event_t::array_start:
        if (depth >= kJsonNestingMax) scan.too_deep = true;
        break;
      case json::parse_event_t::object_end:
        if (!scan.open_objects.empty()) scan.open_objects.pop_back();
        break;
      case json::parse_event_t::key:
        if (!scan.open_objects.empty() && parsed.is_string() &&
            !scan.open_objects.back().insert(parsed.get<std::string>()).second &&
            !scan.has_duplicate) {
          scan.has_duplicate = true;
          scan.duplicate_key = parsed.get<std::string>();
        }
        break;
      default:
        break;
    }
    return true;  // keep everything: discarding would unbalance open_objects
  };
  json parsed = json::parse(header.begin(), header.end(), callback, /*allow_exceptions=*/false,
                            /*ignore_comments=*/false);
  if (parsed.is_discarded())
    return Status::InvalidArgument("safetensors: header is not valid JSON");
  if (!parsed.is_object())
    return Status::InvalidArgument("safetensors: header is not a JSON object");
  if (scan.has_duplicate) {
    return Status::InvalidArgument("safetensors: duplicate key " +
                                   QuoteForMessage(scan.duplicate_key) + " in the header");
  }
  if (scan.too_deep) return Status::InvalidArgument("safetensors: header JSON nested too deep");
  return parsed;
}

Result<Metadata> ParseMetadata(const json& value) {
  if (!value.is_object()) {
    return Status::InvalidArgument("safetensors: __metadata__ is not a JSON object");
  }
  Metadata metadata;
  for (const auto& [key, entry] : value.items()) {
    if (!entry.is_string()) {
      return Status::InvalidArgument("safetensors: __metadata__ value of " + QuoteForMessage(key) +
                                     " is not a string");
    }
    metadata.emplace(key, entry.get<std::string>());
  }
  return metadata;
}

// Element count x element size of `shape`, or an error if a dim is invalid or it overflows.
Result<uint64_t> ShapeBytes(std::string_view name, const std::vector<int64_t>& shape, DType dtype) {
  if (shape.empty() || shape.size() > kRankMax) {
    return TensorError(name, "rank " + std::to_string(shape.size()) + " is outside 1..4");
  }
  uint64_t bytes = DTypeBytes(dtype);
  for (int64_t dim : shape) {
    if (dim < 0) return TensorError(name, "negative dim " + std::to_string(dim));
    if (__builtin_mul_overflow(bytes, static_cast<uint64_t>(dim), &bytes)) {
      return TensorError(name, "element count overflows 64 bits");
    }
  }
  return bytes;
}

Result<std::vector<int64_t>> ParseShape(std::string_view name, const json& value) {
  if (!value.is_array()) return TensorError(name, "shape is not an array");
  if (value.empty() || value.size() > kRankMax) {
    return TensorError(name, "rank " + std::to_string(value.size()) + " is outside 1..4");
  }
  std::vector<int64_t> shape;
  for (const json& dim : value) {
    if (dim.is_number_unsigned()) {
      uint64_t v = dim.get<uint64_t>();
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return TensorError(name, "dim " + std::to_string(v) + " is too large");
      }
      shape.push_back(static_cast<int64_t>(v));
    } else if (dim.is_number_integer()) {
      return TensorError(name, "negative dim " + std::to_string(dim.get<int64_t>()));
    } else {
      return TensorError(name, "shape holds a value that is not an integer");
    }
  }
  return shape;
}

Result<TensorInfo> ParseTensor(const std::string& name, const json& entry, uint64_t data_bytes) {
  if (name.empty()) return TensorError(name, "empty name");
  if (!entry.is_object()) return TensorError(name, "entry is not a JSON object");
  for (const auto& [key, unused] : entry.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      return TensorError(name, "unknown key " + QuoteForMessage(key));
    }
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(key)) return TensorError(name, std::string("missing ") + key);
  }
  TensorInfo info;
  info.name = name;
  const json& dtype = entry["dtype"];
  if (!dtype.is_string()) return TensorError(name, "dtype is not a string");
  Result<DType> parsed_dtype = ParseDType(dtype.get<std::string>());
  if (!parsed_dtype.ok()) return TensorError(name, parsed_dtype.status().message());
  info.dtype = *parsed_dtype;
  TRUSTMOE_ASSIGN_OR_RETURN(info.shape, ParseShape(name, entry["shape"]));
  TRUSTMOE_ASSIGN_OR_RETURN(uint64_t bytes, ShapeBytes(name, info.shape, info.dtype));

  const json& offsets = entry["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned()) {
    return TensorError(name, "data_offsets is not a pair of non-negative integers");
  }
  info.begin = offsets[0].get<uint64_t>();
  info.end = offsets[1].get<uint64_t>();
  if (info.begin > info.end) {
    return TensorError(name, "data_offsets begin " + std::to_string(info.begin) + " > end " +
                                 std::to_string(info.end));
  }
  if (info.end > data_bytes) {
    return TensorError(name, "data_offsets end " + std::to_string(info.end) +
                                 " is out of range of the " + std::to_string(data_bytes) +
                                 "-byte data section");
  }
  if (info.end - info.begin != bytes) {
    return TensorError(name, "data_offsets span " + std::to_string(info.end - info.begin) +
                                 " bytes but dtype and shape need " + std::to_string(bytes));
  }
  return info;
}

// The ranges, in offset order, must cover [0, data_bytes) exactly once.
Status CheckTiling(const std::vector<TensorInfo>& tensors, uint64_t data_bytes) {
  std::vector<const TensorInfo*> by_offset;
  for (const TensorInfo& t : tensors) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return std::tie(a->begin, a->end, a->name) < std::tie(b->begin, b->end, b->name);
  });
  uint64_t covered = 0;
  const TensorInfo* previous = nullptr;
  for (const TensorInfo* t : by_offset) {
    if (t->begin < covered) {
      return TensorError(t->name, "overlaps tensor " + QuoteForMessage(previous->name) +
                                      " (begins at " + std::to_string(t->begin) + ", before " +
                                      std::to_string(covered) + ")");
    }
    if (t->begin > covered) {
      return TensorError(t->name, "gap of " + std::to_string(t->begin - covered) +
                                      " bytes before it (begins at " + std::to_string(t->begin) +
                                      ")");
    }
    covered = t->end;
    previous = t;
  }
  if (covered != data_bytes) {
    return Status::InvalidArgument("safetensors: " + std::to_string(data_bytes - covered) +
                                   " trailing bytes after the last tensor");
  }
  return Status::Ok();
}

}  // namespace

uint64_t DTypeBytes(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
      return 2;
  }
  TRUSTMOE_CHECK(false);
  return 0;
}

std::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
  }
  TRUSTMOE_CHECK(false);
  return "";
}

Result<DType> ParseDType(std::string_view name) {
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16}) {
    if (name == DTypeName(d)) return d;
  }
  return Status::InvalidArgument("unknown dtype " + QuoteForMessage(name) + " (F32, F16 or BF16)");
}

const TensorInfo* SafetensorsFile::Find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorInfo& t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

ByteSpan SafetensorsFile::Data(const TensorInfo& tensor) const {
  TRUSTMOE_CHECK(tensor.begin <= tensor.end);
  TRUSTMOE_CHECK(tensor.end <= data_.size());
  return data_.subspan(tensor.begin, tensor.end - tensor.begin);
}

Result<SafetensorsFile> ParseSafetensors(ByteSpan file, const SafetensorsLimits& limits) {
  if (file.size() > limits.file_bytes_max) {
    return Status::InvalidArgument("safetensors: file of " + std::to_string(file.size()) +
                                   " bytes exceeds the limit of " +
                                   std::to_string(limits.file_bytes_max));
  }
  if (file.size() < kLengthBytes) {
    return Status::InvalidArgument("safetensors: file of " + std::to_string(file.size()) +
                                   " bytes is shorter than the 8-byte header length");
  }
  uint64_t header_bytes = ReadLittleEndian64(file.first(kLengthBytes));
  if (header_bytes > limits.header_bytes_max) {
    return Status::InvalidArgument("safetensors: header length " + std::to_string(header_bytes) +
                                   " exceeds the limit of " +
                                   std::to_string(limits.header_bytes_max));
  }
  if (header_bytes > file.size() - kLengthBytes) {
    return Status::InvalidArgument("safetensors: header length " + std::to_string(header_bytes) +
                                   " runs past the end of the " + std::to_string(file.size()) +
                                   "-byte file");
  }
  ByteSpan header = file.subspan(kLengthBytes, header_bytes);
  TRUSTMOE_ASSIGN_OR_RETURN(
      json root, ParseHeaderJson({reinterpret_cast<const char*>(header.data()), header.size()}));

  SafetensorsFile out;
  out.data_ = file.subspan(kLengthBytes + header_bytes);
  uint64_t tensor_count = root.size() - (root.contains(kMetadataKey) ? 1 : 0);
  if (tensor_count > limits.tensors_max) {
    return Status::InvalidArgument("safetensors: " + std::to_string(tensor_count) +
                                   " tensors exceed the limit of " +
                                   std::to_string(limits.tensors_max));
  }
  // nlohmann's object is a std::map, so tensors come out sorted by name.
  for (const auto& [key, value] : root.items()) {
    if (key == kMetadataKey) {
      TRUSTMOE_ASSIGN_OR_RETURN(out.metadata_, ParseMetadata(value));
      continue;
    }
    TRUSTMOE_ASSIGN_OR_RETURN(TensorInfo info, ParseTensor(key, value, out.data_.size()));
    out.tensors_.push_back(std::move(info));
  }
  TRUSTMOE_RETURN_IF_ERROR(CheckTiling(out.tensors_, out.data_.size()));
  return out;
}

Result<Bytes> WriteSafetensors(const Metadata& metadata, std::vector<TensorData> tensors) {
  std::sort(tensors.begin(), tensors.end(),
            [](const TensorData& a, const TensorData& b) { return a.name < b.name; });
  for (const auto& [key, value] : metadata) {
    if (!IsValidUtf8(key) || !IsValidUtf8(value)) {
      return Status::InvalidArgument("safetensors: metadata " + QuoteForMessage(key) +
                                     " is not UTF-8");
    }
  }
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [key, value] : metadata) {
      if (!first) header += ",";
      first = false;
      header += json(key).dump() + ":" + json(value).dump();
    }
    header += "}";
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorData& t = tensors[i];
    if (t.name.empty() || t.name == kMetadataKey || !IsValidUtf8(t.name)) {
      return TensorError(t.name, "invalid name");
    }
    if (i > 0 && tensors[i - 1].name == t.name) return TensorError(t.name, "duplicate name");
    TRUSTMOE_ASSIGN_OR_RETURN(uint64_t bytes, ShapeBytes(t.name, t.shape, t.dtype));
    if (bytes != t.data.size()) {
      return TensorError(t.name, "data of " + std::to_string(t.data.size()) +
                                     " bytes but dtype and shape need " + std::to_string(bytes));
    }
    if (header.size() > 1) header += ",";
    header += json(t.name).dump() + ":{\"dtype\":\"" + std::string(DTypeName(t.dtype)) +
              "\",\"shape\":" + json(t.shape).dump() + ",\"data_offsets\":[" +
              std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');

  Bytes out;
  out.reserve(kLengthBytes + header.size() + offset);
  uint64_t header_bytes = header.size();
  for (uint64_t i = 0; i < kLengthBytes; ++i)
    out.push_back(static_cast<uint8_t>(header_bytes >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  for (const TensorData& t : tensors) out.insert(out.end(), t.data.begin(), t.data.end());
  return out;
}

}  // namespace trustmoe::edge
