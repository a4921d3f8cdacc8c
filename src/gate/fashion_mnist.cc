#include "gate/fashion_mnist.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <system_error>

#include "common/check.h"

namespace trustmoe::gate {
namespace {

// IDX magic: two zero bytes, the element type (0x08: unsigned byte), the number of dims.
constexpr uint32_t kImagesMagic = 0x00000803;
constexpr uint32_t kLabelsMagic = 0x00000801;
constexpr int64_t kMagicBytes = 4;
constexpr int64_t kImagesHeaderBytes = 16;  // magic, count, rows, cols
constexpr int64_t kLabelsHeaderBytes = 8;   // magic, count
constexpr int64_t kImageBytes = kFashionMnistRows * kFashionMnistCols;
static_assert(kIdxDecompressedBytesMax == kImagesHeaderBytes + kIdxItemsMax * kImageBytes);
// zlib's input buffer, and the most bytes asked of one gzread (its length is an unsigned int).
constexpr unsigned kGzBufferBytes = 128u << 10;
constexpr int64_t kGzReadBytesMax = 16ll << 20;

struct GzCloser {
  void operator()(gzFile_s* file) const { gzclose(file); }
};
using GzHandle = std::unique_ptr<gzFile_s, GzCloser>;

std::string NotFoundMessage(std::string_view what, const std::string& path) {
  return std::string(what) + " " + path +
         " does not exist: " + std::string(kFashionMnistInstallHint);
}

// Opens a gzip file for reading; refuses anything that is not a regular gzip file.
Result<GzHandle> OpenGz(const std::string& path) {
  std::error_code ec;
  const std::filesystem::file_status status = std::filesystem::status(path, ec);
  if (status.type() == std::filesystem::file_type::not_found) {
    return Status::NotFound(NotFoundMessage("Fashion-MNIST file", path));
  }
  if (ec) return Status::Internal(path + ": cannot stat: " + ec.message());
  if (status.type() != std::filesystem::file_type::regular) {
    return Status::InvalidArgument(path + ": not a regular file");
  }
  GzHandle file(gzopen(path.c_str(), "rb"));
  if (file == nullptr) {
    return Status::Internal(path + ": cannot open: " + std::strerror(errno));
  }
  if (gzbuffer(file.get(), kGzBufferBytes) != 0) {
    return Status::Internal(path + ": cannot set the gzip buffer size");
  }
  // zlib would copy a file without a gzip header through unchanged; the dataset is gzip only.
  if (gzdirect(file.get()) != 0) {
    return Status::InvalidArgument(path + ": not a gzip file (empty, or no gzip header)");
  }
  return file;
}

// The Status of a failed gzread: a corrupt stream is the file's fault, an I/O error is not.
Status GzReadError(gzFile file, const std::string& path) {
  int code = Z_OK;
  const char* message = gzerror(file, &code);
  if (code == Z_ERRNO) return Status::Internal(path + ": read error: " + std::strerror(errno));
  return Status::InvalidArgument(path + ": corrupt or truncated gzip stream (zlib: " +
                                 std::string(message == nullptr ? "?" : message) + ")");
}

// Whether the stream has failed. gzread returns 0, not -1, when the compressed data ends
// before the gzip stream does (Z_BUF_ERROR), so a read of 0 bytes must ask.
bool GzFailed(gzFile file) {
  int code = Z_OK;
  gzerror(file, &code);
  return code != Z_OK;
}

// Reads exactly `size` decompressed bytes into `out`.
Status ReadExact(gzFile file, const std::string& path, std::string_view what, uint8_t* out,
                 int64_t size) {
  int64_t done = 0;
  while (done < size) {
    const auto chunk = static_cast<unsigned>(std::min(size - done, kGzReadBytesMax));
    const int got = gzread(file, out + done, chunk);
    if (got < 0 || (got == 0 && GzFailed(file))) return GzReadError(file, path);
    if (got == 0) {
      return Status::InvalidArgument(path + ": truncated: " + std::string(what) + " needs " +
                                     std::to_string(size) + " bytes but only " +
                                     std::to_string(done) + " remain");
    }
    done += got;
  }
  return Status::Ok();
}

// Requires the decompressed stream to end here (which also checks the gzip CRC and length).
Status ExpectEnd(gzFile file, const std::string& path, int64_t count) {
  uint8_t extra = 0;
  const int got = gzread(file, &extra, 1);
  if (got < 0 || (got == 0 && GzFailed(file))) return GzReadError(file, path);
  if (got > 0) {
    return Status::InvalidArgument(path + ": trailing bytes after the " + std::to_string(count) +
                                   " items its header announces");
  }
  return Status::Ok();
}

uint32_t BigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

std::string Hex32(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof(text), "0x%08x", value);
  return text;
}

Status CheckMagic(const std::string& path, uint32_t magic, uint32_t expected,
                  std::string_view kind) {
  if (magic == expected) return Status::Ok();
  return Status::InvalidArgument(path + ": wrong magic " + Hex32(magic) + ", expected " +
                                 Hex32(expected) + " (IDX " + std::string(kind) + ")");
}

Status CheckCount(const std::string& path, uint32_t count) {
  if (count >= 1 && count <= kIdxItemsMax) return Status::Ok();
  return Status::InvalidArgument(path + ": header announces " + std::to_string(count) +
                                 " items, expected 1 to " + std::to_string(kIdxItemsMax));
}

// Reads an images header; returns its item count.
Result<int64_t> ReadImagesHeader(gzFile file, const std::string& path) {
  uint8_t header[kImagesHeaderBytes];
  TRUSTMOE_RETURN_IF_ERROR(ReadExact(file, path, "the magic", header, kMagicBytes));
  TRUSTMOE_RETURN_IF_ERROR(
      CheckMagic(path, BigEndian32(header), kImagesMagic, "unsigned-byte images, 3 dims"));
  TRUSTMOE_RETURN_IF_ERROR(ReadExact(file, path, "the images header", header + kMagicBytes,
                                     kImagesHeaderBytes - kMagicBytes));
  const uint32_t count = BigEndian32(header + 4);
  TRUSTMOE_RETURN_IF_ERROR(CheckCount(path, count));
  const uint32_t rows = BigEndian32(header + 8);
  const uint32_t cols = BigEndian32(header + 12);
  if (rows != kFashionMnistRows || cols != kFashionMnistCols) {
    return Status::InvalidArgument(
        path + ": images are " + std::to_string(rows) + "x" + std::to_string(cols) + ", expected " +
        std::to_string(kFashionMnistRows) + "x" + std::to_string(kFashionMnistCols));
  }
  return int64_t{count};
}

// Reads a labels header; returns its item count.
Result<int64_t> ReadLabelsHeader(gzFile file, const std::string& path) {
  uint8_t header[kLabelsHeaderBytes];
  TRUSTMOE_RETURN_IF_ERROR(ReadExact(file, path, "the magic", header, kMagicBytes));
  TRUSTMOE_RETURN_IF_ERROR(
      CheckMagic(path, BigEndian32(header), kLabelsMagic, "unsigned-byte labels, 1 dim"));
  TRUSTMOE_RETURN_IF_ERROR(ReadExact(file, path, "the labels header", header + kMagicBytes,
                                     kLabelsHeaderBytes - kMagicBytes));
  const uint32_t count = BigEndian32(header + 4);
  TRUSTMOE_RETURN_IF_ERROR(CheckCount(path, count));
  return int64_t{count};
}

Status CheckLabels(const std::string& path, const std::vector<uint8_t>& labels) {
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= kFashionMnistClassCount) {
      return Status::InvalidArgument(path + ": label " + std::to_string(labels[i]) + " of item " +
                                     std::to_string(i) + " is not a class (0 to " +
                                     std::to_string(kFashionMnistClassCount - 1) + ")");
    }
  }
  return Status::Ok();
}

}  // namespace

Result<Dataset> ReadIdxPair(const std::string& images_path, const std::string& labels_path,
                            int64_t limit) {
  if (limit < 0) return Status::InvalidArgument("limit " + std::to_string(limit) + " < 0");
  TRUSTMOE_ASSIGN_OR_RETURN(GzHandle images, OpenGz(images_path));
  TRUSTMOE_ASSIGN_OR_RETURN(GzHandle labels, OpenGz(labels_path));
  TRUSTMOE_ASSIGN_OR_RETURN(const int64_t image_count, ReadImagesHeader(images.get(), images_path));
  TRUSTMOE_ASSIGN_OR_RETURN(const int64_t label_count, ReadLabelsHeader(labels.get(), labels_path));
  if (image_count != label_count) {
    return Status::InvalidArgument(images_path + " holds " + std::to_string(image_count) +
                                   " images but " + labels_path + " holds " +
                                   std::to_string(label_count) + " labels");
  }
  Dataset data;
  data.count = limit > 0 ? std::min(limit, image_count) : image_count;
  TRUSTMOE_CHECK(data.count * kImageBytes + kImagesHeaderBytes <= kIdxDecompressedBytesMax);
  data.pixels.resize(static_cast<size_t>(data.count * kImageBytes));
  data.labels.resize(static_cast<size_t>(data.count));
  TRUSTMOE_RETURN_IF_ERROR(ReadExact(images.get(), images_path, "the images", data.pixels.data(),
                                     data.count * kImageBytes));
  TRUSTMOE_RETURN_IF_ERROR(
      ReadExact(labels.get(), labels_path, "the labels", data.labels.data(), data.count));
  TRUSTMOE_RETURN_IF_ERROR(CheckLabels(labels_path, data.labels));
  if (data.count == image_count) {
    TRUSTMOE_RETURN_IF_ERROR(ExpectEnd(images.get(), images_path, image_count));
    TRUSTMOE_RETURN_IF_ERROR(ExpectEnd(labels.get(), labels_path, label_count));
  }
  return data;
}

std::string FashionMnistImagesFile(Split split) {
  return split == Split::kTrain ? "train-images-idx3-ubyte.gz" : "t10k-images-idx3-ubyte.gz";
}

std::string FashionMnistLabelsFile(Split split) {
  return split == Split::kTrain ? "train-labels-idx1-ubyte.gz" : "t10k-labels-idx1-ubyte.gz";
}

Result<Dataset> LoadFashionMnist(const std::string& dir, Split split, int64_t limit) {
  std::error_code ec;
  const std::filesystem::file_status status = std::filesystem::status(dir, ec);
  if (status.type() == std::filesystem::file_type::not_found) {
    return Status::NotFound(NotFoundMessage("Fashion-MNIST directory", dir));
  }
  if (ec) return Status::Internal(dir + ": cannot stat: " + ec.message());
  if (status.type() != std::filesystem::file_type::directory) {
    return Status::InvalidArgument(dir + ": not a directory");
  }
  const std::filesystem::path base(dir);
  return ReadIdxPair((base / FashionMnistImagesFile(split)).string(),
                     (base / FashionMnistLabelsFile(split)).string(), limit);
}

}  // namespace trustmoe::gate
