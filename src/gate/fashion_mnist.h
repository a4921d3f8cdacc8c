// Fashion-MNIST, the gate's training and evaluation data, read from the IDX files that Debian's
// dataset-fashion-mnist package installs (gzip-compressed, as upstream publishes them).
//
// The files come from outside the process, so they are parsed strictly and every read is
// bounded: a malformed, truncated, oversized or hostile file is refused with InvalidArgument
// naming the file, and never makes the reader allocate more than its header may claim
// (kIdxItemsMax images of 28x28). Thread-safe: the functions share no state.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace trustmoe::gate {

// Where Debian's dataset-fashion-mnist package puts the four files.
inline constexpr std::string_view kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
// Named in every NotFound error, so the fix is in the message.
inline constexpr std::string_view kFashionMnistInstallHint =
    "install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)";

// Image side in pixels; other sizes are refused (the gate's input layer is 28x28).
inline constexpr int64_t kFashionMnistRows = 28;
inline constexpr int64_t kFashionMnistCols = 28;
// Labels are 0..kFashionMnistClassCount-1; a larger label is refused.
inline constexpr int64_t kFashionMnistClassCount = 10;
// Most items one file may hold (Fashion-MNIST's training set has 60000).
inline constexpr int64_t kIdxItemsMax = 100000;
// Most bytes read from one decompressed file: the largest header plus kIdxItemsMax images. A
// reader stops at what its header announces (+1 byte to see the end), so a small gzip that
// expands to gigabytes is refused after at most this much, never held in memory.
inline constexpr int64_t kIdxDecompressedBytesMax =
    16 + kIdxItemsMax * kFashionMnistRows * kFashionMnistCols;

// The class of each label, from the dataset's README (label 0 is "T-shirt/top").
inline constexpr std::array<std::string_view, kFashionMnistClassCount> kFashionMnistClassNames = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};

enum class Split : uint8_t {
  kTrain,  // train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz: 60000 items
  kTest,   // t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz: 10000 items
};

// Images and their labels, in file order.
struct Dataset {
  int64_t count = 0;                 // items
  int64_t rows = kFashionMnistRows;  // pixels per image column
  int64_t cols = kFashionMnistCols;  // pixels per image row
  std::vector<uint8_t> pixels;       // count * rows * cols, image-major then row-major, 0..255
  std::vector<uint8_t> labels;       // count, each < kFashionMnistClassCount
};

// Reads one pair of gzip-compressed IDX files: images (magic 0x00000803, dims count x 28 x 28,
// unsigned bytes) and labels (magic 0x00000801, dims count), big-endian headers as in the IDX
// format. Both must hold the same count, between 1 and kIdxItemsMax.
//
// `limit` > 0 reads only the first min(limit, count) items; 0 reads all of them. When all items
// are read, each file must end there (its gzip CRC and length are then checked too); otherwise
// the rest of each file is neither read nor checked.
//
// Returns the dataset, or
//   NotFound naming the file and kFashionMnistInstallHint when a file does not exist;
//   InvalidArgument naming the file when it is not a regular file, not gzip, a corrupt gzip
//     stream, has a wrong magic, other dims, too many or no items, a count that differs from
//     the other file's, a label >= 10, fewer bytes than its header announces, or trailing bytes;
//     InvalidArgument for a negative limit;
//   Internal naming the file when it cannot be opened or read for another reason.
Result<Dataset> ReadIdxPair(const std::string& images_path, const std::string& labels_path,
                            int64_t limit = 0);

// Reads `split` of Fashion-MNIST from `dir` (normally kFashionMnistDir) with ReadIdxPair.
// NotFound naming `dir` and kFashionMnistInstallHint when the directory does not exist,
// InvalidArgument when `dir` is not a directory; otherwise ReadIdxPair's results.
Result<Dataset> LoadFashionMnist(const std::string& dir, Split split, int64_t limit = 0);

// File names of a split inside the dataset directory.
std::string FashionMnistImagesFile(Split split);
std::string FashionMnistLabelsFile(Split split);

}  // namespace trustmoe::gate
