// Sentence embeddings (data/sts/embedder.h) on a tiny random model: each pooling against a direct
// computation from Infer's hidden states, padding invariance (a sentence embeds the same alone or
// inside a padded batch), input order restored after length sorting, and BERT-whitening of the
// embeddings giving zero mean / identity covariance on the fit set.
#include "data/sts/embedder.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "data/sts/whitening.h"
#include "model/roformer_model.h"
#include "runtime/error.h"

namespace roformer::sts {
namespace {

constexpr int kH = 16;

config::ModelConfig TinyConfig(bool pre_ln = false) {
  config::ModelConfig c;
  c.set_vocab_size(60);
  c.set_hidden_size(kH);
  c.set_num_hidden_layers(2);
  c.set_num_attention_heads(2);
  c.set_intermediate_size(32);
  c.set_hidden_dropout_prob(0.1f);  // must be ignored: embedding runs with dropout off
  c.set_attention_probs_dropout_prob(0.1f);
  c.set_max_position_embeddings(32);
  c.set_type_vocab_size(2);
  c.set_layer_norm_eps(1e-12f);
  c.set_initializer_range(0.3f);
  c.set_pre_ln(pre_ln);
  return c;
}

// [PAD] [UNK] [CLS] [SEP] [MASK] then 55 CJK characters (ids 5..59).
Vocab TinyVocab() {
  std::vector<std::string> t = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  for (char32_t c = 0x4E00; t.size() < 60; ++c) {
    std::string s;
    s += static_cast<char>(0xE0 | (c >> 12));
    s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (c & 0x3F));
    t.push_back(s);
  }
  return Vocab::FromTokens(t);
}

struct Fixture {
  explicit Fixture(bool pre_ln = false)
      : model(TinyConfig(pre_ln), TpRegion(), false), tok(TinyVocab()) {
    model.InitWeights(42);
    // Non-trivial LayerNorm / bias parameters so a wrong index or offset shows.
    std::mt19937 gen(3);
    std::uniform_real_distribution<float> u(-0.5f, 0.5f);
    for (const auto& info : model.store().infos()) {
      if (info.name.find("LayerNorm") != std::string::npos ||
          info.name.find("bias") != std::string::npos) {
        float* p = model.store().param(info.name);
        for (int64_t i = 0; i < info.numel; ++i) p[i] += u(gen);
      }
    }
  }
  RoFormerModel model;
  Tokenizer tok;
};

std::vector<int32_t> RandomSeq(std::mt19937& gen, int len) {
  std::vector<int32_t> s = {2};
  for (int i = 0; i < len - 2; ++i) s.push_back(5 + static_cast<int32_t>(gen() % 55));
  s.push_back(3);
  return s;
}

// Runs Infer on one unpadded sequence: hidden states and the sequence output.
void InferOne(RoFormerModel& m, const std::vector<int32_t>& ids, std::vector<float>* seq,
              std::vector<std::vector<float>>* hs) {
  Batch b;
  b.batch = 1;
  b.seq_len = static_cast<int>(ids.size());
  b.input_ids = ids;
  b.token_type_ids.assign(ids.size(), 0);
  b.attention_mask.assign(ids.size(), 1);
  m.Infer(b, nullptr, seq, hs);
}

std::vector<float> EmbedWith(Fixture& f, Pooling p, const std::vector<std::vector<int32_t>>& seqs,
                             int batch = 64) {
  EmbedderOptions o;
  o.pooling = p;
  o.batch = batch;
  o.max_len = 32;
  Embedder e(&f.model, &f.tok, o);
  std::vector<float> out(seqs.size() * kH);
  e.EmbedIds(seqs, out.data());
  return out;
}

TEST(Embedder, ParsePooling) {
  for (const char* n : {"cls", "pooler", "last-avg", "first-last-avg"}) {
    EXPECT_STREQ(PoolingName(ParsePooling(n)), n);
  }
  EXPECT_THROW(ParsePooling("mean"), Error);
}

TEST(Embedder, PaddingInvariantForEveryPooling) {
  Fixture f;
  std::mt19937 gen(11);
  std::vector<std::vector<int32_t>> seqs;
  for (int len : {5, 17, 3, 30, 9, 12, 2}) seqs.push_back(RandomSeq(gen, len));
  for (Pooling p : {Pooling::kCls, Pooling::kPooler, Pooling::kLastAvg, Pooling::kFirstLastAvg}) {
    // batch 4: the short sentences share batches with longer ones and are padded.
    std::vector<float> batched = EmbedWith(f, p, seqs, 4);
    for (size_t i = 0; i < seqs.size(); ++i) {
      std::vector<float> alone = EmbedWith(f, p, {seqs[i]});
      for (int h = 0; h < kH; ++h) {
        ASSERT_NEAR(batched[i * kH + h], alone[h], 1e-5)
            << PoolingName(p) << " sentence " << i << " dim " << h;
      }
    }
  }
}

TEST(Embedder, PoolingsMatchHiddenStates) {
  for (bool pre_ln : {false, true}) {
    Fixture f(pre_ln);
    std::mt19937 gen(5);
    const std::vector<int32_t> ids = RandomSeq(gen, 9);
    const int L = static_cast<int>(ids.size());
    std::vector<float> seq;
    std::vector<std::vector<float>> hs;
    InferOne(f.model, ids, &seq, &hs);
    ASSERT_EQ(hs.size(), 3u);  // embeddings, layer 1, layer 2

    std::vector<float> cls = EmbedWith(f, Pooling::kCls, {ids});
    std::vector<float> pooler = EmbedWith(f, Pooling::kPooler, {ids});
    std::vector<float> last = EmbedWith(f, Pooling::kLastAvg, {ids});
    std::vector<float> fl = EmbedWith(f, Pooling::kFirstLastAvg, {ids});
    const float* W = f.model.store().param("sop.pooler.dense.weight");
    const float* bias = f.model.store().param("sop.pooler.dense.bias");
    for (int h = 0; h < kH; ++h) {
      EXPECT_NEAR(cls[h], seq[h], 1e-6) << "cls = sequence output at position 0";
      double z = bias[h];
      for (int i = 0; i < kH; ++i) z += double(W[h * kH + i]) * seq[i];
      EXPECT_NEAR(pooler[h], std::tanh(z), 1e-5) << "pooler = tanh(W cls + b)";
      double m_last = 0, m_fl = 0;
      for (int t = 0; t < L; ++t) {
        m_last += seq[t * kH + h];
        // first = hidden_states[1] (the first transformer layer's output), last = sequence output.
        m_fl += 0.5 * (double(hs[1][t * kH + h]) + seq[t * kH + h]);
      }
      EXPECT_NEAR(last[h], m_last / L, 1e-5);
      EXPECT_NEAR(fl[h], m_fl / L, 1e-5) << "pre_ln " << pre_ln;
    }
  }
}

TEST(Embedder, TextEncodingTruncationAndOrder) {
  Fixture f;
  EmbedderOptions o;
  o.pooling = Pooling::kLastAvg;
  o.max_len = 6;
  o.batch = 2;
  Embedder e(&f.model, &f.tok, o);
  const std::string a = f.tok.vocab().token(5) + f.tok.vocab().token(6);
  std::string long_s;
  for (int i = 0; i < 10; ++i) long_s += f.tok.vocab().token(7 + i);
  bool trunc = false;
  EXPECT_EQ(e.Encode(a, &trunc), (std::vector<int32_t>{2, 5, 6, 3}));
  EXPECT_FALSE(trunc);
  EXPECT_EQ(e.Encode(long_s, &trunc), (std::vector<int32_t>{2, 7, 8, 9, 10, 3}));
  EXPECT_TRUE(trunc);
  EXPECT_EQ(e.Encode("", &trunc), (std::vector<int32_t>{2, 3}));

  // Length sorting must not change which row is whose.
  std::vector<std::string> s = {a, long_s, f.tok.vocab().token(9), a + a, ""};
  std::vector<float> all = e.Embed(s);
  EXPECT_EQ(e.stats().truncated, 1);
  for (size_t i = 0; i < s.size(); ++i) {
    std::vector<float> one = e.Embed({s[i]});
    for (int h = 0; h < kH; ++h) ASSERT_NEAR(all[i * kH + h], one[h], 1e-5) << i;
  }
  EXPECT_EQ(EmbedDistributed(e, s, nullptr), all);
}

TEST(Embedder, MaxLenClampedToModel) {
  Fixture f;
  EmbedderOptions o;
  o.max_len = 512;
  Embedder e(&f.model, &f.tok, o);
  EXPECT_EQ(e.max_len(), 32);
  o.max_len = 1;
  EXPECT_THROW(Embedder(&f.model, &f.tok, o), Error);
}

TEST(Embedder, WhiteningGivesIdentityCovarianceOnFitSet) {
  Fixture f;
  std::mt19937 gen(9);
  std::vector<std::vector<int32_t>> seqs;
  for (int i = 0; i < 300; ++i) seqs.push_back(RandomSeq(gen, 3 + static_cast<int>(gen() % 20)));
  for (Pooling p : {Pooling::kCls, Pooling::kFirstLastAvg}) {
    std::vector<float> x = EmbedWith(f, p, seqs, 16);
    const int n = static_cast<int>(seqs.size());
    WhiteningKernel k = FitWhitening(x.data(), n, kH);
    // A Post-LN output is gamma * xhat + beta with sum(xhat) = 0: [CLS] vectors (and their means)
    // lie in a hyperplane, so the covariance has rank H - 1 and the last direction is floored
    // noise. Identity is checked on the top H - 1 whitened directions.
    const int K = kH - 1;
    std::vector<float> y(size_t(n) * K);
    k.Apply(x.data(), n, K, y.data(), /*l2_normalize=*/false);
    for (int i = 0; i < K; ++i) {
      double mean = 0;
      for (int r = 0; r < n; ++r) mean += y[r * K + i];
      EXPECT_NEAR(mean / n, 0.0, 1e-4);
      for (int j = 0; j < K; ++j) {
        double c = 0;
        for (int r = 0; r < n; ++r) c += double(y[r * K + i]) * y[r * K + j];
        EXPECT_NEAR(c / (n - 1), i == j ? 1.0 : 0.0, 2e-3)
            << PoolingName(p) << " " << i << "," << j;
      }
    }
  }
}

TEST(Embedder, ReadSentences) {
  const std::string dir = ::testing::TempDir();
  const std::string txt = dir + "/emb_sent.txt", tsv = dir + "/emb_pairs.tsv";
  std::ofstream(txt) << "a b\r\n\n  \nc\n";
  std::ofstream(tsv) << "x\ty\t1\nz\tw\t0\n";
  EXPECT_EQ(ReadSentences(txt), (std::vector<std::string>{"a b", "c"}));
  EXPECT_EQ(ReadSentences(tsv), (std::vector<std::string>{"x", "y", "z", "w"}));
  std::ofstream(tsv) << "x\ty\n";
  EXPECT_THROW(ReadSentences(tsv), Error);
  EXPECT_THROW(ReadSentences(dir + "/missing.txt"), Error);
}

}  // namespace
}  // namespace roformer::sts
