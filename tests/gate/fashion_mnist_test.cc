#include "gate/fashion_mnist.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "crypto/sha256.h"
#include "tests/common/test_dir.h"

namespace trustmoe::gate {
namespace {

using testutil::TempDir;

constexpr int64_t kImageBytes = kFashionMnistRows * kFashionMnistCols;

// ---- The real dataset (Debian's dataset-fashion-mnist) ----

// Pinned from the files of dataset-fashion-mnist 0.0~git20200523.55506a9-1 (Debian bookworm),
// computed independently of this reader; upstream's data has not changed since 2017.
constexpr uint64_t kTrainPixelSum = 3431114169u;
constexpr std::string_view kTrainPixelSha256 =
    "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012";
constexpr std::string_view kTrainLabelSha256 =
    "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7";
constexpr uint64_t kTestPixelSum = 573469082u;
constexpr std::string_view kTestPixelSha256 =
    "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a";
constexpr uint64_t kTrainFirst100PixelSum = 5688570u;
constexpr std::string_view kTrainFirst100PixelSha256 =
    "9fd5e05238929f78618002dd971c29d7154e418c5e6c5159dcbc48bead93a90f";

#define SKIP_WITHOUT_DATASET()                                                         \
  do {                                                                                 \
    if (!std::filesystem::is_directory(std::string(kFashionMnistDir))) {               \
      GTEST_SKIP() << "Fashion-MNIST is not installed at " << kFashionMnistDir << ": " \
                   << kFashionMnistInstallHint;                                        \
    }                                                                                  \
  } while (0)

uint64_t Sum(const std::vector<uint8_t>& bytes) {
  return std::accumulate(bytes.begin(), bytes.end(), uint64_t{0});
}

std::string Sha256Hex(const std::vector<uint8_t>& bytes) {
  return crypto::DigestHex(crypto::Sha256::Hash(ByteSpan(bytes.data(), bytes.size())));
}

std::vector<int64_t> ClassCounts(const std::vector<uint8_t>& labels) {
  std::vector<int64_t> counts(kFashionMnistClassCount, 0);
  for (uint8_t label : labels) {
    EXPECT_LT(label, kFashionMnistClassCount);
    if (label < kFashionMnistClassCount) ++counts[label];
  }
  return counts;
}

TEST(FashionMnistRealTest, TrainSetLoads) {
  SKIP_WITHOUT_DATASET();
  Result<Dataset> data = LoadFashionMnist(std::string(kFashionMnistDir), Split::kTrain);
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  EXPECT_EQ(data->count, 60000);
  EXPECT_EQ(data->rows, 28);
  EXPECT_EQ(data->cols, 28);
  ASSERT_EQ(data->pixels.size(), 60000u * 28 * 28);
  ASSERT_EQ(data->labels.size(), 60000u);
  EXPECT_EQ(data->labels[0], 9);
  EXPECT_EQ(kFashionMnistClassNames[data->labels[0]], "Ankle boot");
  EXPECT_EQ(std::vector<uint8_t>(data->labels.begin(), data->labels.begin() + 10),
            (std::vector<uint8_t>{9, 0, 0, 3, 0, 2, 7, 2, 5, 5}));
  EXPECT_EQ(ClassCounts(data->labels), std::vector<int64_t>(10, 6000));
  EXPECT_EQ(Sum(data->pixels), kTrainPixelSum);
  EXPECT_EQ(Sha256Hex(data->pixels), kTrainPixelSha256);
  EXPECT_EQ(Sha256Hex(data->labels), kTrainLabelSha256);
}

TEST(FashionMnistRealTest, TestSetLoads) {
  SKIP_WITHOUT_DATASET();
  Result<Dataset> data = LoadFashionMnist(std::string(kFashionMnistDir), Split::kTest);
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  EXPECT_EQ(data->count, 10000);
  ASSERT_EQ(data->pixels.size(), 10000u * 28 * 28);
  ASSERT_EQ(data->labels.size(), 10000u);
  EXPECT_EQ(data->labels[0], 9);
  EXPECT_EQ(ClassCounts(data->labels), std::vector<int64_t>(10, 1000));
  EXPECT_EQ(Sum(data->pixels), kTestPixelSum);
  EXPECT_EQ(Sha256Hex(data->pixels), kTestPixelSha256);
}

TEST(FashionMnistRealTest, LimitReadsTheFirstItems) {
  SKIP_WITHOUT_DATASET();
  Result<Dataset> data = LoadFashionMnist(std::string(kFashionMnistDir), Split::kTrain, 100);
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  EXPECT_EQ(data->count, 100);
  ASSERT_EQ(data->pixels.size(), 100u * 28 * 28);
  ASSERT_EQ(data->labels.size(), 100u);
  EXPECT_EQ(data->labels[0], 9);
  EXPECT_EQ(Sum(data->pixels), kTrainFirst100PixelSum);
  EXPECT_EQ(Sha256Hex(data->pixels), kTrainFirst100PixelSha256);
}

TEST(FashionMnistRealTest, LimitAboveTheCountReadsAll) {
  SKIP_WITHOUT_DATASET();
  Result<Dataset> data = LoadFashionMnist(std::string(kFashionMnistDir), Split::kTest, 1000000);
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  EXPECT_EQ(data->count, 10000);
  EXPECT_EQ(Sha256Hex(data->pixels), kTestPixelSha256);
}

TEST(FashionMnistTest, ClassNames) {
  EXPECT_EQ(kFashionMnistClassNames.size(), 10u);
  EXPECT_EQ(kFashionMnistClassNames[0], "T-shirt/top");
  EXPECT_EQ(kFashionMnistClassNames[5], "Sandal");
  EXPECT_EQ(kFashionMnistClassNames[9], "Ankle boot");
}

TEST(FashionMnistTest, SplitFileNames) {
  EXPECT_EQ(FashionMnistImagesFile(Split::kTrain), "train-images-idx3-ubyte.gz");
  EXPECT_EQ(FashionMnistLabelsFile(Split::kTrain), "train-labels-idx1-ubyte.gz");
  EXPECT_EQ(FashionMnistImagesFile(Split::kTest), "t10k-images-idx3-ubyte.gz");
  EXPECT_EQ(FashionMnistLabelsFile(Split::kTest), "t10k-labels-idx1-ubyte.gz");
}

// ---- Files written by the tests ----

std::string BigEndian32(uint32_t value) {
  return {static_cast<char>(value >> 24), static_cast<char>(value >> 16),
          static_cast<char>(value >> 8), static_cast<char>(value)};
}

std::string ImagesIdx(uint32_t count, std::string_view pixels, uint32_t rows = 28,
                      uint32_t cols = 28, uint32_t magic = 0x00000803) {
  return BigEndian32(magic) + BigEndian32(count) + BigEndian32(rows) + BigEndian32(cols) +
         std::string(pixels);
}

std::string LabelsIdx(uint32_t count, std::string_view labels, uint32_t magic = 0x00000801) {
  return BigEndian32(magic) + BigEndian32(count) + std::string(labels);
}

// `count` images whose pixel j of image i is (i * 7 + j) % 256.
std::string Pixels(int64_t count) {
  std::string pixels(static_cast<size_t>(count * kImageBytes), '\0');
  for (int64_t i = 0; i < count; ++i) {
    for (int64_t j = 0; j < kImageBytes; ++j) {
      pixels[static_cast<size_t>(i * kImageBytes + j)] = static_cast<char>((i * 7 + j) % 256);
    }
  }
  return pixels;
}

std::string Labels(int64_t count) {
  std::string labels;
  for (int64_t i = 0; i < count; ++i) labels.push_back(static_cast<char>(i % 10));
  return labels;
}

void WriteRaw(const std::string& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string Gzip(std::string_view data) {
  z_stream stream{};
  EXPECT_EQ(deflateInit2(&stream, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&stream, data.size()), '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&stream, Z_FINISH), Z_STREAM_END);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

void WriteGzip(const std::string& path, std::string_view data) { WriteRaw(path, Gzip(data)); }

// A pair of files in a temp dir, named as the training split.
class IdxFiles {
 public:
  std::string images() const { return dir_.Sub(FashionMnistImagesFile(Split::kTrain)); }
  std::string labels() const { return dir_.Sub(FashionMnistLabelsFile(Split::kTrain)); }
  const std::string& dir() const { return dir_.path(); }

  void Write(std::string_view images_idx, std::string_view labels_idx) {
    WriteGzip(images(), images_idx);
    WriteGzip(labels(), labels_idx);
  }
  Result<Dataset> Read(int64_t limit = 0) const { return ReadIdxPair(images(), labels(), limit); }

 private:
  TempDir dir_;
};

bool Contains(const Status& status, std::string_view text) {
  return status.message().find(text) != std::string::npos;
}

// InvalidArgument naming `path` and saying `why`.
void ExpectRefused(const Result<Dataset>& result, const std::string& path, std::string_view why) {
  ASSERT_FALSE(result.ok()) << "accepted; expected: " << why;
  EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument) << result.status().ToString();
  EXPECT_TRUE(Contains(result.status(), path)) << result.status().ToString();
  EXPECT_TRUE(Contains(result.status(), why)) << result.status().ToString();
}

TEST(FashionMnistFileTest, WellFormedPairRoundTrips) {
  IdxFiles files;
  files.Write(ImagesIdx(3, Pixels(3)), LabelsIdx(3, std::string("\x09\x00\x05", 3)));
  Result<Dataset> data = files.Read();
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  EXPECT_EQ(data->count, 3);
  EXPECT_EQ(std::string(data->pixels.begin(), data->pixels.end()), Pixels(3));
  EXPECT_EQ(data->labels, (std::vector<uint8_t>{9, 0, 5}));

  Result<Dataset> loaded = LoadFashionMnist(files.dir(), Split::kTrain);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->pixels, data->pixels);
}

TEST(FashionMnistFileTest, LimitReadsAPrefixAndIgnoresTheRest) {
  IdxFiles files;
  // Trailing bytes after the announced items: refused when reading all, unread with a limit.
  files.Write(ImagesIdx(5, Pixels(5) + "junk"), LabelsIdx(5, Labels(5)));
  Result<Dataset> data = files.Read(2);
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  EXPECT_EQ(data->count, 2);
  EXPECT_EQ(std::string(data->pixels.begin(), data->pixels.end()), Pixels(2));
  EXPECT_EQ(data->labels, (std::vector<uint8_t>{0, 1}));
  ExpectRefused(files.Read(), files.images(), "trailing bytes");
  ExpectRefused(files.Read(5), files.images(), "trailing bytes");
}

TEST(FashionMnistFileTest, NegativeLimitIsRefused) {
  IdxFiles files;
  files.Write(ImagesIdx(1, Pixels(1)), LabelsIdx(1, Labels(1)));
  Result<Dataset> data = files.Read(-1);
  ASSERT_FALSE(data.ok());
  EXPECT_EQ(data.status().code(), StatusCode::kInvalidArgument);
}

TEST(FashionMnistFileTest, WrongMagicIsRefused) {
  IdxFiles files;
  files.Write(ImagesIdx(2, Pixels(2), 28, 28, 0x00000801), LabelsIdx(2, Labels(2)));
  ExpectRefused(files.Read(), files.images(), "wrong magic 0x00000801, expected 0x00000803");
  files.Write(ImagesIdx(2, Pixels(2)), LabelsIdx(2, Labels(2), 0x00000803));
  ExpectRefused(files.Read(), files.labels(), "wrong magic 0x00000803, expected 0x00000801");
  // Another element type (0x0D: float) with the right number of dims.
  files.Write(ImagesIdx(2, Pixels(2), 28, 28, 0x00000D03), LabelsIdx(2, Labels(2)));
  ExpectRefused(files.Read(), files.images(), "wrong magic");
  // Images and labels swapped.
  WriteGzip(files.images(), LabelsIdx(2, Labels(2)));
  WriteGzip(files.labels(), ImagesIdx(2, Pixels(2)));
  ExpectRefused(files.Read(), files.images(), "wrong magic");
}

TEST(FashionMnistFileTest, TruncatedDataIsRefused) {
  IdxFiles files;
  const std::string pixels = Pixels(3);
  files.Write(ImagesIdx(3, pixels.substr(0, pixels.size() - 100)), LabelsIdx(3, Labels(3)));
  ExpectRefused(files.Read(), files.images(), "truncated");
  files.Write(ImagesIdx(3, pixels), LabelsIdx(3, Labels(2)));
  ExpectRefused(files.Read(), files.labels(), "truncated");
  // A header cut short.
  files.Write(ImagesIdx(3, "").substr(0, 10), LabelsIdx(3, Labels(3)));
  ExpectRefused(files.Read(), files.images(), "truncated: the images header");
}

TEST(FashionMnistFileTest, TruncatedOrCorruptGzipIsRefused) {
  IdxFiles files;
  files.Write(ImagesIdx(3, Pixels(3)), LabelsIdx(3, Labels(3)));
  const std::string gz = Gzip(ImagesIdx(3, Pixels(3)));
  // The compressed stream cut in the middle.
  WriteRaw(files.images(), gz.substr(0, gz.size() / 2));
  ExpectRefused(files.Read(), files.images(), "gzip stream");
  // A wrong CRC in the gzip trailer (the 8 last bytes are CRC-32 and length).
  std::string bad_crc = gz;
  bad_crc[bad_crc.size() - 8] ^= 0x01;
  WriteRaw(files.images(), bad_crc);
  ExpectRefused(files.Read(), files.images(), "gzip stream");
  // Garbage inside the deflate data.
  std::string garbled = gz;
  for (size_t i = 20; i < 60 && i < garbled.size(); ++i) garbled[i] = static_cast<char>(0xFF);
  WriteRaw(files.images(), garbled);
  ExpectRefused(files.Read(), files.images(), "gzip stream");
  // The trailer missing: every byte is there, but the stream does not end.
  WriteRaw(files.images(), gz.substr(0, gz.size() - 8));
  ExpectRefused(files.Read(), files.images(), "gzip stream");
  // With a limit the end is not read, so a file cut after the items still serves them.
  ASSERT_TRUE(files.Read(2).ok());
}

TEST(FashionMnistFileTest, CountMismatchIsRefused) {
  IdxFiles files;
  files.Write(ImagesIdx(3, Pixels(3)), LabelsIdx(4, Labels(4)));
  Result<Dataset> data = files.Read();
  ExpectRefused(data, files.images(), "holds 3 images but");
  EXPECT_TRUE(Contains(data.status(), files.labels() + " holds 4 labels"));
}

TEST(FashionMnistFileTest, AbsurdDimsAreRefused) {
  IdxFiles files;
  files.Write(ImagesIdx(1, Pixels(1), 1000000, 1000000), LabelsIdx(1, Labels(1)));
  ExpectRefused(files.Read(), files.images(), "images are 1000000x1000000, expected 28x28");
  files.Write(ImagesIdx(1, Pixels(1), 28, 29), LabelsIdx(1, Labels(1)));
  ExpectRefused(files.Read(), files.images(), "expected 28x28");
  files.Write(ImagesIdx(1, Pixels(1), 0, 0), LabelsIdx(1, Labels(1)));
  ExpectRefused(files.Read(), files.images(), "expected 28x28");
  files.Write(ImagesIdx(0xFFFFFFFF, Pixels(1)), LabelsIdx(0xFFFFFFFF, Labels(1)));
  ExpectRefused(files.Read(), files.images(), "4294967295 items, expected 1 to 100000");
  files.Write(ImagesIdx(100001, Pixels(1)), LabelsIdx(100001, Labels(1)));
  ExpectRefused(files.Read(), files.images(), "100001 items");
  files.Write(ImagesIdx(0, ""), LabelsIdx(0, ""));
  ExpectRefused(files.Read(), files.images(), "0 items");
  files.Write(ImagesIdx(2, Pixels(2)), LabelsIdx(0x7FFFFFFF, Labels(2)));
  ExpectRefused(files.Read(), files.labels(), "2147483647 items");
}

TEST(FashionMnistFileTest, LabelOutOfRangeIsRefused) {
  IdxFiles files;
  files.Write(ImagesIdx(3, Pixels(3)), LabelsIdx(3, std::string("\x01\x0A\x02", 3)));
  ExpectRefused(files.Read(), files.labels(), "label 10 of item 1 is not a class");
  files.Write(ImagesIdx(3, Pixels(3)), LabelsIdx(3, std::string("\x01\x02\xFF", 3)));
  ExpectRefused(files.Read(), files.labels(), "label 255 of item 2");
}

TEST(FashionMnistFileTest, NotGzipIsRefused) {
  IdxFiles files;
  files.Write(ImagesIdx(2, Pixels(2)), LabelsIdx(2, Labels(2)));
  // An uncompressed IDX file, which zlib alone would pass through unchanged.
  WriteRaw(files.images(), ImagesIdx(2, Pixels(2)));
  ExpectRefused(files.Read(), files.images(), "not a gzip file");
  WriteRaw(files.images(), "");
  ExpectRefused(files.Read(), files.images(), "not a gzip file");
  WriteRaw(files.images(), "\x1f");
  ExpectRefused(files.Read(), files.images(), "");
  WriteGzip(files.images(), ImagesIdx(2, Pixels(2)));
  WriteRaw(files.labels(), "PK\x03\x04 a zip archive, not gzip");
  ExpectRefused(files.Read(), files.labels(), "not a gzip file");
}

TEST(FashionMnistFileTest, DirectoryInPlaceOfAFileIsRefused) {
  IdxFiles files;
  files.Write(ImagesIdx(2, Pixels(2)), LabelsIdx(2, Labels(2)));
  std::filesystem::remove(files.images());
  std::filesystem::create_directory(files.images());
  ExpectRefused(files.Read(), files.images(), "not a regular file");
}

int64_t MaxRssBytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return int64_t{usage.ru_maxrss} * 1024;
}

// `header` followed by `zero_bytes` zeros, as gzip: the header's member, then one member of
// 1 MiB of zeros (about 1 KiB compressed) repeated. gzip readers read concatenated members as
// one stream, so a gigabyte of zeros is a file of about a megabyte, written at once.
void WriteZeroBomb(const std::string& path, std::string_view header, int64_t zero_bytes) {
  constexpr int64_t kMemberBytes = 1 << 20;
  ASSERT_EQ(zero_bytes % kMemberBytes, 0);
  const std::string zeros_member = Gzip(std::string(kMemberBytes, '\0'));
  std::string bomb = header.empty() ? "" : Gzip(header);
  for (int64_t i = 0; i < zero_bytes / kMemberBytes; ++i) bomb += zeros_member;
  WriteRaw(path, bomb);
}

TEST(FashionMnistFileTest, GzipBombIsBoundedByTheHeader) {
  IdxFiles files;
  constexpr int64_t kBombBytes = 1ll << 30;  // 1 GiB of zeros, 13x kIdxDecompressedBytesMax
  static_assert(kBombBytes > 10 * kIdxDecompressedBytesMax);
  WriteZeroBomb(files.images(), ImagesIdx(10, ""), kBombBytes);
  WriteGzip(files.labels(), LabelsIdx(10, Labels(10)));
  const uintmax_t file_bytes = std::filesystem::file_size(files.images());
  EXPECT_LT(file_bytes, 2u << 20) << "the bomb should be small on disk";

  const int64_t rss_before = MaxRssBytes();
  ExpectRefused(files.Read(), files.images(), "trailing bytes after the 10 items");
  // The reader stopped after its 10 images (+1 byte), far from the gigabyte.
  EXPECT_LT(MaxRssBytes() - rss_before, 64ll << 20);

  // A stream of zeros alone is refused at its header.
  WriteZeroBomb(files.images(), "", kBombBytes);
  ExpectRefused(files.Read(), files.images(), "wrong magic 0x00000000");
  EXPECT_LT(MaxRssBytes() - rss_before, 64ll << 20);
}

TEST(FashionMnistFileTest, MissingFileIsNotFoundNamingThePackage) {
  IdxFiles files;
  files.Write(ImagesIdx(2, Pixels(2)), LabelsIdx(2, Labels(2)));
  std::filesystem::remove(files.labels());
  Result<Dataset> data = files.Read();
  ASSERT_FALSE(data.ok());
  EXPECT_EQ(data.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(data.status(), files.labels())) << data.status().ToString();
  EXPECT_TRUE(Contains(data.status(),
                       "install Debian's dataset-fashion-mnist "
                       "(apt-get install dataset-fashion-mnist)"))
      << data.status().ToString();

  // The test split's files are absent from this directory.
  Result<Dataset> test = LoadFashionMnist(files.dir(), Split::kTest);
  ASSERT_FALSE(test.ok());
  EXPECT_EQ(test.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(test.status(), "t10k-images-idx3-ubyte.gz")) << test.status().ToString();
  EXPECT_TRUE(Contains(test.status(), "dataset-fashion-mnist")) << test.status().ToString();
}

TEST(FashionMnistFileTest, MissingDirectoryIsNotFoundNamingThePackage) {
  TempDir tmp;
  const std::string dir = tmp.Sub("no-such-dir");
  Result<Dataset> data = LoadFashionMnist(dir, Split::kTrain);
  ASSERT_FALSE(data.ok());
  EXPECT_EQ(data.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(data.status(), dir)) << data.status().ToString();
  EXPECT_TRUE(Contains(data.status(), kFashionMnistInstallHint)) << data.status().ToString();

  // A file where the directory should be.
  WriteRaw(dir, "not a directory");
  Result<Dataset> file = LoadFashionMnist(dir, Split::kTrain);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(file.status(), "not a directory")) << file.status().ToString();
}

}  // namespace
}  // namespace trustmoe::gate
