// store_bench: Put and Get of one large blob over loopback gRPC, against the bound of
// single-core SHA-256 over the same bytes, measured in the same run.
//
//   store_bench [--mib N] [--dir DIR]
//
// The store runs in this process (BlobStore on RocksDB in DIR + StoreService on 127.0.0.1:0);
// the client talks to it over a real loopback TCP connection, as an edge would.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>

#include "common/malloc_tuning.h"
#include "common/log.h"
#include "common/metrics.h"
#include "crypto/cid.h"
#include "net/transport.h"
#include "storage/blob_store.h"
#include "storage/store_client.h"
#include "storage/store_service.h"

using namespace trustmoe;

namespace {

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

[[noreturn]] void Die(const Status& s, const char* what) {
  std::fprintf(stderr, "store_bench: %s: %s\n", what, s.ToString().c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  trustmoe::TuneMallocForStreaming();
  uint64_t mib = 1024;
  std::string dir;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--mib" && i + 1 < argc) {
      mib = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else {
      std::fprintf(stderr, "usage: store_bench [--mib N] [--dir DIR]\n");
      return 2;
    }
  }
  if (mib == 0) mib = 1;
  (void)InitLogging({.level = "warn", .format = LogFormat::kText, .process = "store_bench"});
  bool own_dir = dir.empty();
  if (own_dir) {
    char tmpl[] = "/tmp/store_bench.XXXXXX";
    if (!::mkdtemp(tmpl)) return 1;
    dir = tmpl;
  }

  const uint64_t size = mib << 20;
  std::printf("store_bench: %llu MiB blob, loopback gRPC, RocksDB in %s\n",
              static_cast<unsigned long long>(mib), dir.c_str());
  Bytes data(size);
  std::mt19937_64 rng(42);
  for (size_t i = 0; i + 8 <= data.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(&data[i], &v, 8);
  }

  // The bound: plain single-core SHA-256 over the same bytes.
  auto t0 = std::chrono::steady_clock::now();
  crypto::Sha256 sha;
  for (uint64_t off = 0; off < size; off += crypto::kChunkBytes) {
    sha.Update(ByteSpan(data).subspan(off, std::min<uint64_t>(crypto::kChunkBytes, size - off)));
  }
  crypto::Digest digest = sha.Final();
  double sha_s = Seconds(t0);
  double sha_mibps = mib / sha_s;
  (void)digest;

  // A second bound: this machine's file system, writing the same bytes and syncing them (the
  // store must land every byte on disk, and so must a download to a file).
  double disk_mibps = 0;
  {
    std::string path = dir + "/disk_bound.bin";
    t0 = std::chrono::steady_clock::now();
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(data.data(), 1, data.size(), f) != data.size() || std::fflush(f) != 0 ||
        ::fsync(::fileno(f)) != 0) {
      std::fprintf(stderr, "store_bench: cannot write %s\n", path.c_str());
      return 1;
    }
    std::fclose(f);
    disk_mibps = mib / Seconds(t0);
    std::filesystem::remove(path);
  }

  // Store in this process, client over loopback TCP.
  storage::BlobStoreOptions store_options;
  store_options.path = dir + "/db";
  store_options.blob_bytes_max = size;
  store_options.store_bytes_max = 3 * size;
  auto store = storage::BlobStore::Open(store_options);
  if (!store.ok()) Die(store.status(), "open store");
  auto writer = crypto::PrivateKey::Generate();
  if (!writer.ok()) Die(writer.status(), "keygen");
  MetricsRegistry metrics;
  storage::StoreServiceOptions service_options;
  service_options.writers.insert(writer->public_key());
  storage::StoreService service(store->get(), service_options, &metrics);
  net::TransportConfig transport;
  auto server = net::StartServer("127.0.0.1:0", transport, {&service});
  if (!server.ok()) Die(server.status(), "start server");

  storage::StoreClientOptions client_options;
  client_options.endpoints = {"127.0.0.1:" + std::to_string(server->bound_port)};
  client_options.writer = std::make_shared<const crypto::PrivateKey>(*writer);
  auto client = storage::StoreClient::Create(client_options);
  if (!client.ok()) Die(client.status(), "client");

  // Breakdown: the BlobStore alone (no RPC), on a copy with one byte changed.
  double local_mibps = 0;
  {
    Bytes other = data;
    other[0] ^= 1;
    t0 = std::chrono::steady_clock::now();
    auto upload = (*store)->BeginUpload(size);
    if (!upload.ok()) Die(upload.status(), "local upload");
    for (uint64_t off = 0; off < size; off += crypto::kChunkBytes) {
      uint64_t n = std::min<uint64_t>(crypto::kChunkBytes, size - off);
      Status s = (*upload)->Append(off, ByteSpan(other).subspan(off, n));
      if (!s.ok()) Die(s, "local append");
    }
    auto committed = (*upload)->Commit(false);
    if (!committed.ok()) Die(committed.status(), "local commit");
    local_mibps = mib / Seconds(t0);
  }

  t0 = std::chrono::steady_clock::now();
  auto put = (*client)->Put(data);
  double put_s = Seconds(t0);
  if (!put.ok()) Die(put.status(), "put");
  double put_mibps = mib / put_s;

  t0 = std::chrono::steady_clock::now();
  auto got = (*client)->Get(put->cid, size);
  double get_s = Seconds(t0);
  if (!got.ok()) Die(got.status(), "get");
  if (*got != data) {
    std::fprintf(stderr, "store_bench: downloaded bytes differ from uploaded ones\n");
    return 1;
  }
  double get_mibps = mib / get_s;

  std::string file = dir + "/download.bin";
  t0 = std::chrono::steady_clock::now();
  Status to_file = (*client)->GetToFile(put->cid, file);
  double file_s = Seconds(t0);
  if (!to_file.ok()) Die(to_file, "get to file");
  double file_mibps = mib / file_s;

  auto row = [&](const char* what, double mibps) {
    std::printf("  %-28s %9.1f MiB/s   %5.2fx sha256   %5.2fx disk\n", what, mibps,
                mibps / sha_mibps, mibps / disk_mibps);
  };
  std::printf("  %-28s %9.1f MiB/s   (bound 1)\n", "sha256, one core", sha_mibps);
  std::printf("  %-28s %9.1f MiB/s   (bound 2)\n", "disk write + fsync", disk_mibps);
  row("put (memory -> store)", put_mibps);
  row("  BlobStore alone, no RPC", local_mibps);
  row("get (store -> memory)", get_mibps);
  row("get (store -> file)", file_mibps);
  std::printf("cid %s\n", put->cid.ToString().c_str());
  std::printf("ratio put/sha256 %.2f get/sha256 %.2f (aim >= 0.50); put/disk %.2f "
              "get-to-file/disk %.2f\n",
              put_mibps / sha_mibps, get_mibps / sha_mibps, put_mibps / disk_mibps,
              file_mibps / disk_mibps);

  server->server->Shutdown();
  client->reset();
  store->reset();
  if (own_dir) std::filesystem::remove_all(dir);
  return 0;
}
