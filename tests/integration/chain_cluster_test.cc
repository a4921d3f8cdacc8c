// Four real trustmoe-validator processes on loopback: commits, the primary killed and a view
// change, kill -9 at arbitrary moments, restarts, and ledgers compared byte for byte.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <future>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include "chain/ledger/app.h"
#include "chain/ledger/ledger_store.h"
#include "tests/integration/validator_cluster.h"

namespace trustmoe::chain::testing {
namespace {

using storage::testing::WaitFor;
using namespace std::chrono_literals;

ledger::ChainParams FastParams() {
  ledger::ChainParams p;
  p.view_change_timeout_ms = 1000;
  return p;
}

uint64_t MinHeight(const ValidatorCluster& c) {
  uint64_t min = UINT64_MAX;
  for (uint32_t i = 0; i < c.size(); ++i) {
    auto head = c.Head(i);
    min = std::min<uint64_t>(min, head ? head->height : 0);
  }
  return min;
}

// Waits until every validator reports the same head, then stops them all (SIGTERM, exit 0) and
// checks that their ledgers hold the same blocks, transactions, state and state roots, and
// that each verifies from genesis with state replay.
void ExpectEqualLedgers(ValidatorCluster& c) {
  uint64_t target = 0;
  for (uint32_t i = 0; i < c.size(); ++i) {
    auto head = c.Head(i);
    if (head) target = std::max(target, head->height);
  }
  EXPECT_TRUE(WaitFor([&] { return MinHeight(c) >= target; }, 60s))
      << "validators did not converge on height " << target;
  for (uint32_t i = 0; i < c.size(); ++i) EXPECT_EQ(c.Stop(i), 0) << c.Log(i);
  auto reference = LedgerContents(c.data_dir(0) + "/ledger");
  EXPECT_GT(reference.size(), 10u);
  for (uint32_t i = 0; i < c.size(); ++i) {
    auto contents = LedgerContents(c.data_dir(i) + "/ledger");
    EXPECT_EQ(contents.size(), reference.size()) << "validator " << i;
    EXPECT_TRUE(contents == reference) << "validator " << i << " ledger differs";
    ledger::LedgerOptions opts;
    opts.path = c.data_dir(i) + "/ledger";
    opts.read_only = true;
    opts.validators = c.genesis().Validators();
    opts.limits = c.genesis().Limits();
    opts.genesis_digest = c.genesis().Hash();
    auto store = ledger::LedgerStore::Open(opts);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ledger::ChainCheck check =
        ledger::VerifyChainAndState(**store, c.genesis(), ledger::TxRegistry::Default());
    EXPECT_TRUE(check.ok) << "validator " << i << ": block " << check.first_bad_height << ": "
                          << check.reason;
  }
}

TEST(ChainClusterTest, PrimaryKilledViewChangeContinuesAndRestartedReplicaCatchesUp) {
  auto cluster = ValidatorCluster::Start(1, FastParams());
  ASSERT_NE(cluster, nullptr);
  auto client = cluster->Client();
  ASSERT_NE(client, nullptr);

  for (int i = 0; i < 10; ++i) {
    ledger::Tx tx = cluster->RegisterEdge("edge-" + std::to_string(i));
    auto r = client->Submit(tx.Encode());
    ASSERT_TRUE(r.ok()) << r.status().ToString() << "\nvalidator 0 log:\n" << cluster->Log(0)
                        << "\nvalidator 1 log:\n" << cluster->Log(1);
    EXPECT_GE(r->height, 1u);
    ASSERT_TRUE(r->committed.has_value());
    EXPECT_EQ(r->committed->id, tx.Id());
  }
  auto head = cluster->Head(1);
  ASSERT_TRUE(head.has_value());
  const uint32_t primary = static_cast<uint32_t>(head->view % cluster->size());
  const uint64_t height_before = head->height;

  cluster->Kill9(primary);
  const auto killed_at = std::chrono::steady_clock::now();
  std::vector<uint32_t> live;
  for (uint32_t i = 0; i < cluster->size(); ++i) {
    if (i != primary) live.push_back(i);
  }
  auto live_client = cluster->Client(live);
  ASSERT_NE(live_client, nullptr);
  // Submissions during the view change commit once the new primary is in place.
  for (int i = 0; i < 10; ++i) {
    ledger::Tx tx = cluster->RegisterEdge("after-" + std::to_string(i));
    auto r = live_client->Submit(tx.Encode());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_GT(r->height, height_before);
  }
  bool new_view = WaitFor(
      [&] {
        for (uint32_t i : live) {
          auto h = cluster->Head(i);
          if (!h || h->view == head->view) return false;
        }
        return true;
      },
      20s);
  EXPECT_TRUE(new_view) << "no view change after killing primary " << primary;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at)
                          .count();
  std::cout << "[ info ] view change and 10 commits " << secs << " s after killing primary "
            << primary << "\n";

  ASSERT_TRUE(cluster->Launch(primary).ok());
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(client->Submit(cluster->RegisterEdge("late-" + std::to_string(i)).Encode()).ok());
  }
  ExpectEqualLedgers(*cluster);
}

TEST(ChainClusterTest, KillNineAtArbitraryMomentsLeavesIdenticalLedgers) {
  auto cluster = ValidatorCluster::Start(1, FastParams());
  ASSERT_NE(cluster, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<int> committed{0};
  std::vector<std::thread> submitters;
  for (int t = 0; t < 3; ++t) {
    submitters.emplace_back([&, t] {
      auto client = cluster->Client({}, 20000);
      if (client == nullptr) return;
      for (int i = 0; !stop.load(); ++i) {
        auto r = client->Submit(
            cluster->RegisterEdge("k" + std::to_string(t) + "-" + std::to_string(i)).Encode());
        if (r.ok()) ++committed;
      }
    });
  }
  std::mt19937 rng(12345);
  for (int round = 0; round < 6; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200 + rng() % 600));
    // Backups only: a killed primary costs a view change per round (covered above).
    uint32_t victim = 1 + rng() % (cluster->size() - 1);
    cluster->Kill9(victim);
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 400));
    ASSERT_TRUE(cluster->Launch(victim).ok());
  }
  // Progress, not speed: on a loaded machine the rounds above may commit only a few; the
  // cluster must go on committing once they are over.
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  std::this_thread::sleep_for(1s);
  while (committed.load() <= 20 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  stop = true;
  for (auto& t : submitters) t.join();
  EXPECT_GT(committed.load(), 20);
  ExpectEqualLedgers(*cluster);
}

// Raw bytes that are not a protobuf message of the method, sent to a real validator.
grpc::Status RawUnaryCall(const std::string& endpoint, const std::string& method,
                          const std::string& bytes) {
  auto channel = grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 10s);
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) { done.set_value(s); });
  return done.get_future().get();
}

TEST(ChainClusterTest, MalformedProtobufAndGarbageAreRefusedAndTheValidatorKeepsServing) {
  auto cluster = ValidatorCluster::Start(1, FastParams());
  ASSERT_NE(cluster, nullptr);
  auto client = cluster->Client();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Submit(cluster->RegisterEdge("before").Encode()).ok());
  const uint64_t height = cluster->Head(0)->height;

  // Field 1 (tx) declared 1000 bytes long with 3 present; a wire type that does not exist;
  // random bytes: none of these parses as a request.
  const std::string truncated = std::string("\x0a\xe8\x07" "abc");
  const std::string bad_wire_type = std::string("\x0f\x01\x02");
  std::string random(4096, '\0');
  for (size_t i = 0; i < random.size(); ++i) random[i] = static_cast<char>((i * 131 + 7) % 251);
  for (const std::string& method :
       {std::string("/trustmoe.v1.ChainService/SubmitTx"),
        std::string("/trustmoe.v1.ChainService/GetBlock"),
        std::string("/trustmoe.v1.ChainService/GetTx")}) {
    for (const std::string& bytes : {truncated, bad_wire_type, random}) {
      grpc::Status s = RawUnaryCall(cluster->endpoint(0), method, bytes);
      EXPECT_FALSE(s.ok()) << method;
      EXPECT_NE(s.error_code(), grpc::StatusCode::UNAVAILABLE) << method << ": "
                                                               << s.error_message();
    }
  }
  // A well-formed SubmitTx whose tx field is garbage: INVALID_ARGUMENT with a reason.
  grpc::Status s = RawUnaryCall(cluster->endpoint(0), "/trustmoe.v1.ChainService/SubmitTx",
                                std::string("\x0a\x05hello"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_FALSE(s.error_message().empty());

  // Still serving, nothing was committed in between.
  auto head = cluster->Head(0);
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->height, height);
  auto r = client->Submit(cluster->RegisterEdge("after").Encode());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->height, height + 1);
}

}  // namespace
}  // namespace trustmoe::chain::testing
