#include "data/sts/spearman.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "runtime/error.h"
#include "runtime/json.h"

namespace roformer::sts {
namespace {

std::vector<double> Doubles(const Json& a) {
  std::vector<double> v;
  for (const Json& e : a.as_array()) v.push_back(e.as_double());
  return v;
}

// Expected values from scipy.stats (tests/reference/make_spearman_fixture.py).
TEST(SpearmanTest, MatchesScipyFixtureIncludingTies) {
  const Json doc =
      Json::ParseFile(ROFORMER_SOURCE_DIR "/tests/reference/fixtures/spearman_cases.json");
  ASSERT_GE(doc.at("cases").size(), 5u);
  for (const Json& c : doc.at("cases").as_array()) {
    const std::string name = c.at("name").as_string();
    const std::vector<double> x = Doubles(c.at("x")), y = Doubles(c.at("y"));
    EXPECT_EQ(RankData(x), Doubles(c.at("rank_x"))) << name;  // half-integers: exact
    EXPECT_EQ(RankData(y), Doubles(c.at("rank_y"))) << name;
    const double rho = Spearman(x, y), r = Pearson(x, y);
    if (c.at("spearman").is_null()) {
      EXPECT_TRUE(std::isnan(rho)) << name;
    } else {
      EXPECT_NEAR(rho, c.at("spearman").as_double(), 1e-12) << name;
    }
    if (c.at("pearson").is_null()) {
      EXPECT_TRUE(std::isnan(r)) << name;
    } else {
      EXPECT_NEAR(r, c.at("pearson").as_double(), 1e-12) << name;
    }
  }
}

TEST(SpearmanTest, BasicProperties) {
  const std::vector<double> x = {1, 2, 3, 4, 5}, y = {2, 4, 8, 16, 32};
  EXPECT_DOUBLE_EQ(Spearman(x, y), 1.0);  // monotone, not linear
  EXPECT_LT(Pearson(x, y), 1.0);
  const std::vector<double> ties = {3, 1, 3, 2};
  EXPECT_EQ(RankData(ties), (std::vector<double>{3.5, 1, 3.5, 2}));
  EXPECT_TRUE(RankData(std::vector<double>{}).empty());
  // Degenerate inputs give NaN like scipy.
  EXPECT_TRUE(std::isnan(Spearman(std::vector<double>{1}, std::vector<double>{2})));
  EXPECT_TRUE(std::isnan(Pearson(std::vector<double>{1, 1, 1}, std::vector<double>{1, 2, 3})));
  EXPECT_TRUE(std::isnan(Spearman(std::vector<double>{1, NAN, 3}, std::vector<double>{1, 2, 3})));
  EXPECT_THROW(Spearman(x, std::vector<double>{1, 2}), Error);
  EXPECT_THROW(Pearson(x, std::vector<double>{1, 2}), Error);
}

TEST(SpearmanTest, CosineSimilarity) {
  const float a[3] = {1, 0, 0}, b[3] = {0, 2, 0}, c[3] = {3, 0, 0}, d[3] = {-1, -1, 0},
              z[3] = {0, 0, 0};
  EXPECT_NEAR(CosineSimilarity(a, b, 3), 0.0, 1e-15);
  EXPECT_NEAR(CosineSimilarity(a, c, 3), 1.0, 1e-15);
  EXPECT_NEAR(CosineSimilarity(a, d, 3), -1.0 / std::sqrt(2.0), 1e-12);
  EXPECT_EQ(CosineSimilarity(a, z, 3), 0.0);  // clipped norm: no NaN
}

}  // namespace
}  // namespace roformer::sts
