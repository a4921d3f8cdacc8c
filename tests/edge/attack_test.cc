// The edge's fault injection for the robustness experiment (edge/attack.h) and its [attack]
// config section.
#include <gtest/gtest.h>

#include "edge/attack.h"
#include "edge/edge_config.h"

namespace trustmoe::edge {
namespace {

HostTensor Ones(int64_t rows, int64_t cols) {
  HostTensor t;
  t.rows = rows;
  t.cols = cols;
  std::vector<float> v(static_cast<size_t>(rows * cols), 1.0f);
  t.data = FromFloats(DType::kF32, v);
  return t;
}

std::vector<float> Values(const HostTensor& t) { return *ToFloats(t.dtype, t.data); }

TEST(AttackTest, OffByDefaultAndNothingChanges) {
  AttackConfig config;
  EXPECT_FALSE(config.enabled());
  Attacker a(config);
  HostTensor y = Ones(2, 3);
  EXPECT_EQ(a.Apply(&y), "");
  EXPECT_EQ(Values(y), std::vector<float>(6, 1.0f));
}

TEST(AttackTest, ConsistentAltersEveryResultTheSameWay) {
  AttackConfig config;
  config.mode = "consistent";
  config.kinds = {"sign"};
  Attacker a(config);
  for (int i = 0; i < 3; ++i) {
    HostTensor y = Ones(2, 3);
    EXPECT_EQ(a.Apply(&y), "sign");
    EXPECT_EQ(Values(y), std::vector<float>(6, -1.0f));
  }
  EXPECT_EQ(a.altered(), 3u);
}

TEST(AttackTest, IntermittentBehavesFirstThenAltersAFraction) {
  AttackConfig config;
  config.mode = "intermittent";
  config.kinds = {"scale", "zero", "noise"};
  config.honest_calls = 10;
  config.fraction = 0.5;
  Attacker a(config);
  for (int i = 0; i < 10; ++i) {
    HostTensor y = Ones(1, 4);
    EXPECT_EQ(a.Apply(&y), "");
  }
  int altered = 0;
  std::set<std::string> kinds;
  for (int i = 0; i < 400; ++i) {
    HostTensor y = Ones(1, 4);
    std::string k = a.Apply(&y);
    if (!k.empty()) {
      ++altered;
      kinds.insert(k);
      EXPECT_NE(Values(y), std::vector<float>(4, 1.0f));
    }
  }
  EXPECT_GT(altered, 120);
  EXPECT_LT(altered, 280);
  EXPECT_EQ(kinds.size(), 3u);  // the kinds change
}

TEST(AttackTest, ReplaySendsAnEarlierOutput) {
  AttackConfig config;
  config.mode = "intermittent";
  config.kinds = {"replay"};
  config.honest_calls = 1;
  config.fraction = 1.0;
  Attacker a(config);
  HostTensor first = Ones(1, 2);
  first.data = FromFloats(DType::kF32, std::vector<float>{7.0f, 8.0f});
  EXPECT_EQ(a.Apply(&first), "");
  HostTensor second = Ones(2, 2);
  EXPECT_EQ(a.Apply(&second), "replay");
  EXPECT_EQ(Values(second), (std::vector<float>{7.0f, 8.0f, 7.0f, 8.0f}));
}

TEST(AttackTest, ConfigSectionIsCheckedLikeEveryOther) {
  const std::string base = R"(identity_key = "k"
data_dir = "d"
genesis = "g"
[store]
endpoints = ["127.0.0.1:1"]
)";
  auto none = ParseEdgeConfig(base, "edge.toml");
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->attack.enabled());
  auto on = ParseEdgeConfig(base + "[attack]\nmode = \"intermittent\"\nkinds = [\"noise\", \"replay\"]\n"
                                   "honest_calls = 5\nfraction = 0.25\nseed = 3\n",
                            "edge.toml");
  ASSERT_TRUE(on.ok()) << on.status().ToString();
  EXPECT_EQ(on->attack.mode, "intermittent");
  EXPECT_EQ(on->attack.kinds, (std::vector<std::string>{"noise", "replay"}));
  EXPECT_EQ(on->attack.honest_calls, 5u);
  for (const std::string bad : {"mode = \"sometimes\"", "kinds = [\"flip\"]", "kinds = []",
                                "fraction = 1.5", "typo = 1"}) {
    auto r = ParseEdgeConfig(base + "[attack]\n" + bad + "\n", "edge.toml");
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("edge.toml"), std::string::npos) << r.status().ToString();
  }
}

}  // namespace
}  // namespace trustmoe::edge
