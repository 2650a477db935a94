#include "data/pretrain_samples.h"

#include <algorithm>
#include <cmath>

#include "data/tokenizer/tokenizer.h"
#include "runtime/error.h"
#include "runtime/philox.h"

namespace roformer {
namespace {

uint64_t Mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// "[PAD]", "[unused12]", "[CLS]": bracketed names are control tokens, never MLM targets or random
// replacements. A lone "[" or "]" is ordinary punctuation.
bool IsBracketToken(const std::string& t) {
  if (t.size() < 3 || t.front() != '[' || t.back() != ']') return false;
  for (size_t i = 1; i + 1 < t.size(); ++i) {
    const char c = t[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
      return false;
    }
  }
  return true;
}

struct Range {
  uint64_t begin, end;
};

// Per-thread scratch so that building a sample does not allocate once warmed up.
struct Scratch {
  std::vector<Range> pieces;
  std::vector<int32_t> a, b;
  std::vector<int32_t> candidates;   // positions
  std::vector<int32_t> group_start;  // offsets into candidates (whole-word groups) + sentinel
  std::vector<int32_t> order;        // shuffled group ids
  std::vector<int32_t> chosen;       // selected positions
};

Scratch& GetScratch() {
  thread_local Scratch s;
  return s;
}

}  // namespace

PretrainSampleBuilder::PretrainSampleBuilder(const ShardedCorpus* corpus, const Vocab& vocab,
                                             PretrainOptions options, SampleSplit split)
    : corpus_(corpus), options_(options), split_(split) {
  if (!corpus) Fail("PretrainSampleBuilder: no corpus");
  corpus->CheckVocab(vocab);
  if (options_.max_seq_len < 5) {
    Fail("max_seq_len must be >= 5 ([CLS] A [SEP] B [SEP]), got ", options_.max_seq_len);
  }
  if (!(options_.mlm_probability > 0 && options_.mlm_probability <= 1)) {
    Fail("mlm_probability must be in (0, 1], got ", options_.mlm_probability);
  }
  if (!(options_.short_seq_prob >= 0 && options_.short_seq_prob <= 1)) {
    Fail("short_seq_prob must be in [0, 1], got ", options_.short_seq_prob);
  }
  if (options_.max_predictions < 0) Fail("max_predictions must be >= 0");
  cls_ = vocab.cls_id();
  sep_ = vocab.sep_id();
  mask_ = vocab.mask_id();
  pad_ = vocab.pad_id();
  unk_ = vocab.unk_id();
  special_.assign(vocab.size(), 0);
  continuation_.assign(vocab.size(), 0);
  for (int id = 0; id < vocab.size(); ++id) {
    const std::string& t = vocab.token(id);
    special_[id] =
        IsBracketToken(t) || id == cls_ || id == sep_ || id == mask_ || id == pad_ || id == unk_;
    continuation_[id] = t.size() > 2 && t[0] == '#' && t[1] == '#';
    if (!special_[id]) random_ids_.push_back(id);
  }
  if (random_ids_.empty()) Fail("vocab ", vocab.path(), " has no ordinary token");

  docs_ = split == SampleSplit::kTrain ? corpus->train_documents() : corpus->eval_documents();
  if (docs_.empty()) {
    Fail(corpus->dir(), ": no ", split == SampleSplit::kTrain ? "training" : "evaluation",
         " documents (", corpus->num_documents(), " documents, eval_fraction ",
         corpus->manifest().eval_fraction, ")");
  }
  const uint64_t target = static_cast<uint64_t>(options_.max_seq_len - 3);
  chunk_begin_.reserve(docs_.size() + 1);
  chunk_begin_.push_back(0);
  for (uint32_t d : docs_) {
    const uint64_t n = corpus->doc_token_end(d) - corpus->doc_token_begin(d);
    chunk_begin_.push_back(chunk_begin_.back() + std::max<uint64_t>(1, (n + target - 1) / target));
  }
  key_ = Mix64(options_.seed ^ (split == SampleSplit::kEval ? 0xE7A1E7A1E7A1E7A1ull : 0));
  perm_bits_ = 2;
  while (perm_bits_ < 62 && (uint64_t{1} << perm_bits_) < epoch_size()) perm_bits_ += 2;
}

// Keyed bijection on [0, 2^perm_bits_) (4-round balanced Feistel network), restricted to
// [0, epoch_size) by cycle walking; the domain is < 4x the range, so < 4 walks on average.
uint64_t PretrainSampleBuilder::Permute(uint64_t x, uint64_t epoch) const {
  const uint64_t n = epoch_size();
  if (n <= 1) return 0;
  const int half = perm_bits_ / 2;
  const uint64_t mask = (uint64_t{1} << half) - 1;
  const uint64_t ekey = Mix64(key_ ^ Mix64(epoch + 0x51ED27ull));
  do {
    uint64_t l = x >> half, r = x & mask;
    for (uint64_t round = 0; round < 4; ++round) {
      const uint64_t f = Mix64(ekey ^ (round << 58) ^ r) & mask;
      const uint64_t nl = r;
      r = l ^ f;
      l = nl;
    }
    x = (l << half) | r;
  } while (x >= n);
  return x;
}

uint32_t PretrainSampleBuilder::Build(uint64_t index, int32_t* ids, int32_t* types, int32_t* mask,
                                      std::vector<int32_t>* mlm_positions,
                                      std::vector<int32_t>* mlm_labels, int32_t position_offset,
                                      int32_t* sop_label, int* num_tokens) const {
  const ShardedCorpus& c = *corpus_;
  Scratch& s = GetScratch();
  PhiloxStream rng(key_, index);
  const int L = options_.max_seq_len;
  const uint64_t max_tokens = static_cast<uint64_t>(L - 3);

  // 1. index -> chunk -> document.
  const uint64_t n = epoch_size();
  const uint64_t chunk = Permute(index % n, index / n);
  const size_t di =
      static_cast<size_t>(std::upper_bound(chunk_begin_.begin(), chunk_begin_.end(), chunk) -
                          chunk_begin_.begin()) -
      1;
  const uint32_t doc = docs_[di];
  const uint64_t doc_begin = c.doc_token_begin(doc);
  const uint64_t start = doc_begin + (chunk - chunk_begin_[di]) * max_tokens;
  const uint64_t sent_end = c.doc_sentence_begin(doc + 1);

  // 2. Pack sentences up to the target length.
  uint64_t target = max_tokens;
  if (rng.NextDouble() < options_.short_seq_prob) {
    target = static_cast<uint64_t>(rng.Range(2, static_cast<int64_t>(max_tokens)));
  }
  s.pieces.clear();
  uint64_t sent = c.SentenceAt(doc, start);
  uint64_t total = 0;
  {
    const uint64_t sb = c.sentence_token_begin(sent), se = c.sentence_token_begin(sent + 1);
    // A sentence longer than a sequence is entered at the chunk's own offset, so every chunk of a
    // huge unpunctuated document yields different text.
    const uint64_t b = se - sb > max_tokens ? start : sb;
    s.pieces.push_back({b, std::min(se, b + max_tokens)});
    total = s.pieces.back().end - b;
  }
  for (++sent; total < target && sent < sent_end; ++sent) {
    const uint64_t sb = c.sentence_token_begin(sent), se = c.sentence_token_begin(sent + 1);
    s.pieces.push_back({sb, std::min(se, sb + max_tokens)});
    total += s.pieces.back().end - sb;
  }
  // Optionally keep filling from the following documents of the split (corpus order), for corpora
  // whose "documents" are single paragraphs or reviews much shorter than a sequence.
  for (size_t next = di + 1;
       options_.pack_following_documents && total < target && next < docs_.size(); ++next) {
    const uint32_t d2 = docs_[next];
    for (uint64_t s2 = c.doc_sentence_begin(d2);
         total < target && s2 < c.doc_sentence_begin(d2 + 1); ++s2) {
      const uint64_t sb = c.sentence_token_begin(s2), se = c.sentence_token_begin(s2 + 1);
      s.pieces.push_back({sb, std::min(se, sb + max_tokens)});
      total += s.pieces.back().end - sb;
    }
  }

  // A/B split: at a random sentence boundary, or inside a lone sentence at a random token.
  auto append = [&c](std::vector<int32_t>* v, Range r) {
    const size_t old = v->size();
    v->resize(old + (r.end - r.begin));
    c.CopyTokens(r.begin, r.end, v->data() + old);
  };
  s.a.clear();
  s.b.clear();
  if (s.pieces.size() >= 2) {
    const size_t a_end =
        static_cast<size_t>(rng.Range(1, static_cast<int64_t>(s.pieces.size()) - 1));
    for (size_t i = 0; i < s.pieces.size(); ++i) append(i < a_end ? &s.a : &s.b, s.pieces[i]);
  } else {
    const Range p = s.pieces[0];
    const uint64_t m = p.end - p.begin;
    if (m >= 2) {
      const uint64_t cut =
          p.begin + static_cast<uint64_t>(rng.Range(1, static_cast<int64_t>(m) - 1));
      append(&s.a, {p.begin, cut});
      append(&s.b, {cut, p.end});
    } else {
      append(&s.a, p);
    }
  }

  // 3. Sentence order.
  *sop_label = 0;
  if (options_.sop && !s.b.empty() && rng.NextDouble() < 0.5) {
    std::swap(s.a, s.b);
    *sop_label = 1;
  }

  // 4. Truncate the pair to max_tokens (from the longer side, front or back at random).
  size_t af = 0, ab = s.a.size(), bf = 0, bb = s.b.size();
  while ((ab - af) + (bb - bf) > max_tokens) {
    const bool trunc_a = (ab - af) > (bb - bf);
    const bool front = rng.NextU32() & 1;
    if (trunc_a) {
      front ? ++af : --ab;
    } else {
      front ? ++bf : --bb;
    }
  }
  int t = 0;
  ids[t++] = cls_;
  for (size_t i = af; i < ab; ++i) ids[t++] = s.a[i];
  ids[t++] = sep_;
  const int b_start = t;
  for (size_t i = bf; i < bb; ++i) ids[t++] = s.b[i];
  ids[t++] = sep_;
  const int real = t;
  for (; t < L; ++t) ids[t] = pad_;
  for (int i = 0; i < L; ++i) {
    types[i] = i >= b_start && i < real ? 1 : 0;
    mask[i] = i < real ? 1 : 0;
  }
  *num_tokens = real;

  // 5. MLM selection over non-special positions (grouped into words for whole-word masking).
  s.candidates.clear();
  s.group_start.clear();
  for (int i = 1; i < real; ++i) {
    const int32_t id = ids[i];
    if (special_[id]) continue;
    const bool joins = options_.whole_word_mask && continuation_[id] && !s.candidates.empty() &&
                       s.candidates.back() == i - 1;
    if (!joins) s.group_start.push_back(static_cast<int32_t>(s.candidates.size()));
    s.candidates.push_back(i);
  }
  const int num_candidates = static_cast<int>(s.candidates.size());
  if (num_candidates > 0) {
    s.group_start.push_back(num_candidates);
    const int groups = static_cast<int>(s.group_start.size()) - 1;
    int want = static_cast<int>(std::llround(num_candidates * options_.mlm_probability));
    want = std::max(want, 1);
    if (options_.max_predictions > 0) want = std::min(want, options_.max_predictions);
    want = std::min(want, num_candidates);
    s.order.resize(groups);
    for (int g = 0; g < groups; ++g) s.order[g] = g;
    s.chosen.clear();
    // Partial Fisher-Yates: draw groups until `want` positions are chosen; a word that would
    // overshoot is skipped (as in Google's create_pretraining_data).
    for (int g = 0; g < groups && static_cast<int>(s.chosen.size()) < want; ++g) {
      const int pick = g + static_cast<int>(rng.Below(static_cast<uint64_t>(groups - g)));
      std::swap(s.order[g], s.order[pick]);
      const int grp = s.order[g];
      const int gb = s.group_start[grp], ge = s.group_start[grp + 1];
      if (static_cast<int>(s.chosen.size()) + (ge - gb) > want) continue;
      for (int k = gb; k < ge; ++k) s.chosen.push_back(s.candidates[k]);
    }
    std::sort(s.chosen.begin(), s.chosen.end());
    for (int pos : s.chosen) {
      const int32_t original = ids[pos];
      const double r = rng.NextDouble();
      if (r < 0.8) {
        ids[pos] = mask_;
      } else if (r < 0.9) {
        ids[pos] = random_ids_[rng.Below(random_ids_.size())];
      }
      mlm_positions->push_back(position_offset + pos);
      mlm_labels->push_back(original);
    }
  }
  return doc;
}

PretrainSample PretrainSampleBuilder::MakeSample(uint64_t index) const {
  PretrainSample out;
  const int L = options_.max_seq_len;
  out.index = index;
  out.input_ids.resize(L);
  out.token_type_ids.resize(L);
  out.attention_mask.resize(L);
  out.document =
      Build(index, out.input_ids.data(), out.token_type_ids.data(), out.attention_mask.data(),
            &out.mlm_positions, &out.mlm_labels, 0, &out.sop_label, &out.num_tokens);
  return out;
}

void PretrainSampleBuilder::FillBatch(uint64_t first_index, int count, Batch* batch) const {
  if (count < 0) Fail("FillBatch: negative count ", count);
  const int L = options_.max_seq_len;
  batch->batch = count;
  batch->seq_len = L;
  const size_t total = static_cast<size_t>(count) * L;
  batch->input_ids.resize(total);
  batch->token_type_ids.resize(total);
  batch->attention_mask.resize(total);
  batch->mlm_positions.clear();
  batch->mlm_labels.clear();
  batch->sop_labels.resize(options_.sop ? count : 0);
  batch->sample_index.resize(count);
  for (int b = 0; b < count; ++b) {
    const size_t off = static_cast<size_t>(b) * L;
    int32_t sop = 0;
    int num_tokens = 0;
    Build(first_index + b, batch->input_ids.data() + off, batch->token_type_ids.data() + off,
          batch->attention_mask.data() + off, &batch->mlm_positions, &batch->mlm_labels,
          static_cast<int32_t>(off), &sop, &num_tokens);
    if (options_.sop) batch->sop_labels[b] = sop;
    batch->sample_index[b] = static_cast<int64_t>(first_index + b);
  }
}

}  // namespace roformer
