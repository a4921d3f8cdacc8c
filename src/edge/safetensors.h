// A strict safetensors parser and writer (docs/formats/expert.md). No libtorch.
//
// Layout: an 8-byte little-endian header length N, N bytes of JSON header (an object, padded
// with spaces), then the data section. The header maps each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data section) and may
// hold "__metadata__", a string -> string map. Files come from untrusted peers: the parser
// checks every bound before it reads and never interprets anything in a file as code.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"

namespace trustmoe::edge {

enum class DType : uint8_t { kF32, kF16, kBF16 };

// 4 for F32, 2 for F16 and BF16.
uint64_t DTypeBytes(DType dtype);
// "F32", "F16", "BF16": the names safetensors uses.
std::string_view DTypeName(DType dtype);
// The DType named `name` (exact, case-sensitive); InvalidArgument for any other name.
Result<DType> ParseDType(std::string_view name);

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  // Byte range [begin, end) within the data section.
  uint64_t begin = 0;
  uint64_t end = 0;

  uint64_t bytes() const { return end - begin; }
};

using Metadata = std::map<std::string, std::string>;

struct SafetensorsLimits {
  uint64_t header_bytes_max = 1ull << 20;
  uint64_t tensors_max = 64;
  uint64_t file_bytes_max = 16ull << 30;
};

// A parsed file. It refers to the bytes it was parsed from, which must outlive it.
class SafetensorsFile {
 public:
  // Tensors sorted by name.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const Metadata& metadata() const { return metadata_; }
  // The tensor called `name`, or nullptr.
  const TensorInfo* Find(std::string_view name) const;
  // The raw little-endian bytes of `tensor`, which must come from this file's tensors().
  ByteSpan Data(const TensorInfo& tensor) const;
  // The whole data section (after the header).
  ByteSpan data_section() const { return data_; }

 private:
  friend Result<SafetensorsFile> ParseSafetensors(ByteSpan file, const SafetensorsLimits& limits);
  std::vector<TensorInfo> tensors_;
  Metadata metadata_;
  ByteSpan data_;
};

// Parses `file`. InvalidArgument, naming the tensor (if any) and the problem, unless:
//  - the file is at most file_bytes_max, the header length N fits in header_bytes_max and in
//    the file;
//  - the header is JSON (UTF-8, trailing spaces allowed), an object with no duplicate key at any
//    level, nested at most 3 deep, with at most tensors_max tensors;
//  - "__metadata__", if present, maps strings to strings;
//  - each tensor entry has exactly "dtype" (F32, F16, BF16), "shape" (1 to 4 non-negative
//    integers whose element count times the element size fits in 64 bits) and "data_offsets"
//    [begin, end] with end - begin equal to that byte count;
//  - the tensors' ranges, sorted by offset, tile the data section exactly: the first begins at
//    0, each begins where the previous ends, the last ends at the end of the file.
// The result refers to `file`, which must outlive it.
Result<SafetensorsFile> ParseSafetensors(ByteSpan file, const SafetensorsLimits& limits = {});

struct TensorData {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  ByteSpan data;  // little-endian, row-major; must outlive the WriteSafetensors call
};

// The canonical layout of the reference implementation: compact JSON header with
// "__metadata__" first (omitted when empty, keys sorted), then the tensors sorted by name, each
// as {"dtype","shape","data_offsets"}; header padded with spaces to a multiple of 8; data
// contiguous in the same order. InvalidArgument on an empty or duplicate name, the reserved name
// "__metadata__", a rank outside 1..4, a negative dim, or data whose size does not match the
// shape.
Result<Bytes> WriteSafetensors(const Metadata& metadata, std::vector<TensorData> tensors);

}  // namespace trustmoe::edge
