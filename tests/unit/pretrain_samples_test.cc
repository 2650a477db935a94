#include "data/pretrain_samples.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "data/tokenizer/tokenizer.h"
#include "runtime/error.h"
#include "runtime/philox.h"

namespace roformer {
namespace {
namespace fs = std::filesystem;

TEST(Philox, Random123KnownAnswers) {
  auto r = Philox4x32Raw({0, 0, 0, 0}, {0, 0});
  EXPECT_EQ(r, (std::array<uint32_t, 4>{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  r = Philox4x32Raw({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff});
  EXPECT_EQ(r, (std::array<uint32_t, 4>{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  r = Philox4x32Raw({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0});
  EXPECT_EQ(r, (std::array<uint32_t, 4>{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
  EXPECT_EQ(Philox4x32(0x0370734413198a2eull, 0x85a308d3243f6a88ull, 0x299f31d0a4093822ull),
            (std::array<uint32_t, 4>{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
  double sum = 0;
  for (uint64_t i = 0; i < 10000; ++i) {
    const double u = Uniform01(42, i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / 10000, 0.5, 0.02);
  PhiloxStream s(1, 2);
  for (int i = 0; i < 1000; ++i) ASSERT_LT(s.Below(7), 7u);
}

const char kChars[] =
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过"
    "子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制"
    "机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数"
    "正";

std::vector<std::string> Utf8Chars(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

Vocab TinyVocab() {
  std::vector<std::string> t = {"[PAD]", "[unused1]", "[unused2]", "[UNK]",
                                "[CLS]", "[SEP]",     "[MASK]"};
  for (const char* p : {"。", "！", "？", "，", "test", "##ing", "##s", "play", "##er", "hello"}) {
    t.push_back(p);
  }
  for (const auto& c : Utf8Chars(kChars)) t.push_back(c);
  return Vocab::FromTokens(t);
}

// A corpus with multi-sentence documents, single-sentence documents, English words with "##"
// pieces, [UNK]s (characters outside the vocab) and one long document of many chunks.
class PretrainSamplesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string tmpl = (fs::temp_directory_path() / "pretrain_samples_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = new std::string(tmpl);
    std::mt19937 rng(11);
    const auto chars = Utf8Chars(kChars);
    std::string text;
    auto sentence = [&](int len) {
      std::string s;
      for (int k = 0; k < len; ++k) {
        const int r = static_cast<int>(rng() % 100);
        if (r < 3) {
          s += " testing ";
        } else if (r < 5) {
          s += " players ";
        } else if (r < 6) {
          s += "龘";  // not in the vocab -> [UNK]
        } else {
          s += chars[rng() % chars.size()];
        }
      }
      return s + "。";
    };
    for (int d = 0; d < 600; ++d) {
      const int n = d % 5 == 0 ? 1 : 2 + static_cast<int>(rng() % 8);
      for (int s = 0; s < n; ++s) text += sentence(4 + static_cast<int>(rng() % 25));
      text += "\n";
    }
    for (int s = 0; s < 400; ++s) text += sentence(20);  // the long document
    text += "\n一\n";                                    // a one-token document
    std::ofstream(*dir_ + "/c.txt") << text;
    Tokenizer tok(TinyVocab());
    CorpusOptions opt;
    opt.eval_fraction = 0.1;
    opt.max_shard_tokens = 3000;
    PrepareCorpus({*dir_ + "/c.txt"}, tok, *dir_ + "/corpus", opt);
    corpus_ = new ShardedCorpus(ShardedCorpus::Open(*dir_ + "/corpus"));
  }
  static void TearDownTestSuite() {
    delete corpus_;
    std::error_code ec;
    fs::remove_all(*dir_, ec);
    delete dir_;
  }

  static PretrainOptions Options(int L = 64) {
    PretrainOptions o;
    o.max_seq_len = L;
    o.seed = 7;
    return o;
  }

  static std::string* dir_;
  static ShardedCorpus* corpus_;
};
std::string* PretrainSamplesTest::dir_ = nullptr;
ShardedCorpus* PretrainSamplesTest::corpus_ = nullptr;

bool SameSample(const PretrainSample& a, const PretrainSample& b) {
  return a.input_ids == b.input_ids && a.token_type_ids == b.token_type_ids &&
         a.attention_mask == b.attention_mask && a.mlm_positions == b.mlm_positions &&
         a.mlm_labels == b.mlm_labels && a.sop_label == b.sop_label && a.document == b.document;
}

// Row b of a batch as a sample (positions made in-sequence again).
PretrainSample Row(const Batch& batch, int b) {
  PretrainSample s;
  const int L = batch.seq_len;
  auto slice = [&](const std::vector<int32_t>& v) {
    return std::vector<int32_t>(v.begin() + b * L, v.begin() + (b + 1) * L);
  };
  s.input_ids = slice(batch.input_ids);
  s.token_type_ids = slice(batch.token_type_ids);
  s.attention_mask = slice(batch.attention_mask);
  for (size_t i = 0; i < batch.mlm_positions.size(); ++i) {
    if (batch.mlm_positions[i] / L == b) {
      s.mlm_positions.push_back(batch.mlm_positions[i] % L);
      s.mlm_labels.push_back(batch.mlm_labels[i]);
    }
  }
  s.sop_label = batch.sop_labels.empty() ? 0 : batch.sop_labels[b];
  return s;
}

TEST_F(PretrainSamplesTest, SampleIsAPureFunctionOfIndex) {
  const Vocab vocab = TinyVocab();
  PretrainSampleBuilder b1(corpus_, vocab, Options());
  PretrainSampleBuilder b2(corpus_, vocab, Options());
  // Alone vs. after other samples vs. a fresh builder vs. in reverse order.
  std::vector<PretrainSample> seq;
  for (uint64_t i = 0; i < 64; ++i) seq.push_back(b1.MakeSample(i));
  for (int i = 63; i >= 0; --i) {
    EXPECT_TRUE(SameSample(seq[i], b2.MakeSample(i))) << i;
  }
  EXPECT_TRUE(SameSample(b2.MakeSample(1'000'003), b1.MakeSample(1'000'003)));
  // Global batch of 16 vs. 4 DP ranks x 4 rows, over 3 steps.
  const int G = 16, R = 4;
  Batch global, local;
  for (uint64_t step = 0; step < 3; ++step) {
    b1.FillBatch(step * G, G, &global);
    ASSERT_EQ(global.batch, G);
    for (int r = 0; r < R; ++r) {
      b2.FillBatch(step * G + r * (G / R), G / R, &local);
      for (int k = 0; k < G / R; ++k) {
        const PretrainSample a = Row(global, r * (G / R) + k), b = Row(local, k);
        EXPECT_EQ(a.input_ids, b.input_ids);
        EXPECT_EQ(a.mlm_positions, b.mlm_positions);
        EXPECT_EQ(a.mlm_labels, b.mlm_labels);
        EXPECT_EQ(a.sop_label, b.sop_label);
        EXPECT_EQ(local.sample_index[k], static_cast<int64_t>(step * G + r * (G / R) + k));
        PretrainSample alone = b1.MakeSample(step * G + r * (G / R) + k);
        alone.document = a.document;
        EXPECT_TRUE(SameSample(a, alone));
      }
    }
  }
  // Another seed gives other samples.
  PretrainOptions o = Options();
  o.seed = 8;
  PretrainSampleBuilder b3(corpus_, vocab, o);
  int same = 0;
  for (uint64_t i = 0; i < 20; ++i) same += SameSample(b3.MakeSample(i), b1.MakeSample(i));
  EXPECT_LT(same, 3);
}

TEST_F(PretrainSamplesTest, InvariantsAndRates) {
  const Vocab vocab = TinyVocab();
  const int L = 64;
  PretrainSampleBuilder builder(corpus_, vocab, Options(L));
  const int cls = vocab.cls_id(), sep = vocab.sep_id(), mask = vocab.mask_id(),
            pad = vocab.pad_id(), unk = vocab.unk_id();
  auto special = [&](int id) {
    return vocab.token(id).front() == '[' && vocab.token(id).size() > 2;
  };
  int64_t candidates = 0, predicted = 0, masked = 0, randomized = 0, kept = 0, swapped = 0;
  const int N = 4000;
  for (int i = 0; i < N; ++i) {
    const PretrainSample s = builder.MakeSample(i);
    ASSERT_EQ(s.input_ids.size(), static_cast<size_t>(L));
    ASSERT_FALSE(corpus_->IsEval(s.document));
    const int n = s.num_tokens;
    ASSERT_GE(n, 4);
    ASSERT_LE(n, L);
    EXPECT_EQ(s.input_ids[0], cls);
    std::vector<int> seps;
    for (int t = 0; t < n; ++t) {
      if (s.input_ids[t] == sep) seps.push_back(t);
    }
    ASSERT_EQ(seps.size(), 2u) << i;
    ASSERT_EQ(seps[1], n - 1);
    for (int t = 0; t < L; ++t) {
      EXPECT_EQ(s.attention_mask[t], t < n ? 1 : 0);
      EXPECT_EQ(s.token_type_ids[t], t > seps[0] && t < n ? 1 : 0);
      if (t >= n) {
        EXPECT_EQ(s.input_ids[t], pad);
      }
    }
    // Restore the original sequence to count candidates.
    std::vector<int32_t> original = s.input_ids;
    for (size_t k = 0; k < s.mlm_positions.size(); ++k)
      original[s.mlm_positions[k]] = s.mlm_labels[k];
    int cand = 0;
    for (int t = 0; t < n; ++t) cand += !special(original[t]);
    candidates += cand;
    predicted += s.mlm_positions.size();
    if (cand > 0) {
      const long want = std::max(1L, std::lround(cand * 0.15));
      EXPECT_EQ(static_cast<long>(s.mlm_positions.size()), want);
    }
    for (size_t k = 0; k < s.mlm_positions.size(); ++k) {
      const int p = s.mlm_positions[k];
      if (k > 0) {
        ASSERT_LT(s.mlm_positions[k - 1], p);
      }
      ASSERT_GT(p, 0);
      ASSERT_LT(p, n);
      const int label = s.mlm_labels[k];
      ASSERT_FALSE(special(label)) << "special token " << vocab.token(label) << " masked";
      ASSERT_NE(label, unk);
      const int now = s.input_ids[p];
      ASSERT_NE(now, cls);
      ASSERT_NE(now, sep);
      ASSERT_NE(now, pad);
      ASSERT_NE(now, unk);
      if (now == mask) {
        ++masked;
      } else if (now == label) {
        ++kept;
      } else {
        ASSERT_FALSE(special(now));
        ++randomized;
      }
    }
    swapped += s.sop_label;
  }
  EXPECT_NEAR(static_cast<double>(predicted) / candidates, 0.15, 0.01);
  EXPECT_NEAR(static_cast<double>(masked) / predicted, 0.8, 0.015);
  EXPECT_NEAR(static_cast<double>(randomized) / predicted, 0.1, 0.015);
  EXPECT_NEAR(static_cast<double>(kept) / predicted, 0.1, 0.015);
  EXPECT_NEAR(static_cast<double>(swapped) / N, 0.5, 0.03);
}

TEST_F(PretrainSamplesTest, EpochVisitsEveryChunkOnce) {
  const Vocab vocab = TinyVocab();
  const int L = 32;
  PretrainSampleBuilder builder(corpus_, vocab, Options(L));
  std::map<uint32_t, uint64_t> want;
  for (uint32_t d : corpus_->train_documents()) {
    const uint64_t n = corpus_->doc_token_end(d) - corpus_->doc_token_begin(d);
    want[d] = std::max<uint64_t>(1, (n + L - 4) / (L - 3));
  }
  uint64_t total = 0;
  for (const auto& [d, c] : want) total += c;
  ASSERT_EQ(builder.epoch_size(), total);
  for (uint64_t epoch = 0; epoch < 2; ++epoch) {
    std::map<uint32_t, uint64_t> got;
    std::set<std::vector<int32_t>> distinct_long;
    for (uint64_t i = epoch * total; i < (epoch + 1) * total; ++i)
      ++got[builder.MakeSample(i).document];
    EXPECT_EQ(got, want) << "epoch " << epoch;
  }
  // Epochs are shuffled differently.
  int same_doc = 0;
  for (uint64_t i = 0; i < 100; ++i) {
    same_doc += builder.MakeSample(i).document == builder.MakeSample(i + total).document;
  }
  EXPECT_LT(same_doc, 20);
}

TEST_F(PretrainSamplesTest, SingleSentenceDocumentsAreSplitIntoAandB) {
  const Vocab vocab = TinyVocab();
  PretrainSampleBuilder builder(corpus_, vocab, Options(128));
  int checked = 0;
  for (uint64_t i = 0; i < 2000 && checked < 50; ++i) {
    const PretrainSample s = builder.MakeSample(i);
    const uint32_t d = s.document;
    if (corpus_->doc_sentence_begin(d + 1) - corpus_->doc_sentence_begin(d) != 1) continue;
    const uint64_t n = corpus_->doc_token_end(d) - corpus_->doc_token_begin(d);
    if (n < 2) continue;
    int a = 0, b = 0;
    for (int t = 1; t < s.num_tokens; ++t) {
      if (s.input_ids[t] == vocab.sep_id()) continue;
      (s.token_type_ids[t] ? b : a)++;
    }
    EXPECT_GE(a, 1);
    EXPECT_GE(b, 1);
    if (n <= 125) {
      EXPECT_EQ(static_cast<uint64_t>(a + b), n);
    }
    ++checked;
  }
  EXPECT_GE(checked, 20);
}

TEST_F(PretrainSamplesTest, WholeWordMaskingKeepsPiecesTogether) {
  const Vocab vocab = TinyVocab();
  PretrainOptions o = Options(64);
  o.whole_word_mask = true;
  o.mlm_probability = 0.3;
  PretrainSampleBuilder builder(corpus_, vocab, o);
  int words_seen = 0;
  for (uint64_t i = 0; i < 1000; ++i) {
    const PretrainSample s = builder.MakeSample(i);
    std::vector<int32_t> original = s.input_ids;
    std::set<int> chosen(s.mlm_positions.begin(), s.mlm_positions.end());
    for (size_t k = 0; k < s.mlm_positions.size(); ++k)
      original[s.mlm_positions[k]] = s.mlm_labels[k];
    for (int t = 2; t < s.num_tokens; ++t) {
      if (vocab.token(original[t]).rfind("##", 0) != 0) continue;
      // A "##" piece whose word head is an ordinary token is chosen iff its head is.
      const int head = t - 1;
      if (vocab.token(original[head]).front() == '[') continue;
      ++words_seen;
      EXPECT_EQ(chosen.count(t), chosen.count(head)) << "sample " << i << " position " << t;
    }
  }
  EXPECT_GT(words_seen, 100);
}

TEST_F(PretrainSamplesTest, PackingFollowingDocumentsFillsSequences) {
  const Vocab vocab = TinyVocab();
  PretrainOptions o = Options(256);
  o.short_seq_prob = 0;
  PretrainSampleBuilder plain(corpus_, vocab, o);
  o.pack_following_documents = true;
  PretrainSampleBuilder packed(corpus_, vocab, o);
  int64_t real_plain = 0, real_packed = 0;
  for (uint64_t i = 0; i < 300; ++i) {
    real_plain += plain.MakeSample(i).num_tokens;
    const PretrainSample s = packed.MakeSample(i);
    real_packed += s.num_tokens;
    EXPECT_EQ(s.input_ids[s.num_tokens - 1], vocab.sep_id());
  }
  EXPECT_GT(real_packed, real_plain * 3 / 2);
  EXPECT_GT(real_packed, 300 * 200);
}

TEST_F(PretrainSamplesTest, EvalSamplesUseEvalDocuments) {
  const Vocab vocab = TinyVocab();
  PretrainSampleBuilder train(corpus_, vocab, Options(), SampleSplit::kTrain);
  PretrainSampleBuilder eval(corpus_, vocab, Options(), SampleSplit::kEval);
  EXPECT_GT(eval.epoch_size(), 0u);
  for (uint64_t i = 0; i < 200; ++i) {
    EXPECT_TRUE(corpus_->IsEval(eval.MakeSample(i).document));
  }
  Batch b;
  eval.FillBatch(0, 5, &b);
  EXPECT_EQ(b.batch, 5);
  EXPECT_EQ(b.sop_labels.size(), 5u);
  EXPECT_EQ(b.input_ids.size(), 5u * 128 / 2);
}

TEST_F(PretrainSamplesTest, ErrorsAreUserErrors) {
  const Vocab vocab = TinyVocab();
  auto tokens = vocab.tokens();
  tokens.push_back("extra");
  EXPECT_THROW(PretrainSampleBuilder(corpus_, Vocab::FromTokens(tokens), Options()), Error);
  PretrainOptions o = Options(4);
  EXPECT_THROW(PretrainSampleBuilder(corpus_, vocab, o), Error);
  o = Options();
  o.mlm_probability = 0;
  EXPECT_THROW(PretrainSampleBuilder(corpus_, vocab, o), Error);
  // A corpus without eval documents has no eval split.
  const std::string dir = *dir_ + "/noeval";
  Tokenizer tok(TinyVocab());
  PrepareCorpus({*dir_ + "/c.txt"}, tok, dir);
  ShardedCorpus c = ShardedCorpus::Open(dir);
  try {
    PretrainSampleBuilder(&c, vocab, Options(), SampleSplit::kEval);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no evaluation documents"), std::string::npos) << e.what();
  }
}

TEST(PretrainSamplesReal, SharedVocabAndCorpusSmoke) {
  const std::string shared = std::string(ROFORMER_SOURCE_DIR) + "/../shared/data";
  const std::string vocab_path = shared + "/vocab/bert-chinese-vocab.txt";
  const std::string text = shared + "/corpus/luxun-collections.txt";
  if (!fs::exists(vocab_path) || !fs::exists(text))
    GTEST_SKIP() << "shared data absent: " << shared;
  std::string tmpl = (fs::temp_directory_path() / "pretrain_real.XXXXXX").string();
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  Vocab vocab = Vocab::Load(vocab_path);
  Tokenizer tok(vocab);
  CorpusOptions opt;
  opt.eval_fraction = 0.01;
  const CorpusStats st = PrepareCorpus({text}, tok, tmpl + "/c", opt);
  EXPECT_GT(st.tokens, 500'000u);
  // The CLUE/Google Chinese vocab has no curly quotes, … or — (they become [UNK]): ~3% here.
  EXPECT_LT(st.unk_rate(), 0.05);
  ShardedCorpus c = ShardedCorpus::Open(tmpl + "/c");
  PretrainOptions o;
  o.max_seq_len = 512;
  PretrainSampleBuilder builder(&c, vocab, o);
  Batch b;
  builder.FillBatch(0, 32, &b);
  EXPECT_EQ(b.input_ids.size(), 32u * 512);
  EXPECT_GT(b.mlm_positions.size(), 32u * 5);  // paragraphs are short documents
  for (int32_t p : b.mlm_positions) EXPECT_EQ(b.attention_mask[p], 1);
  fs::remove_all(tmpl);
}

}  // namespace
}  // namespace roformer
