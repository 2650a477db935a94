#include "data/clue/clue_features.h"

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>

#include "runtime/error.h"

namespace roformer {
namespace {

using Ids = std::vector<int32_t>;

// bert4keras truncate_sequences(maxlen, -2, *seqs) on content tokens (no specials): while the
// total exceeds `budget`, the longest sequence (first among equals) loses its last token.
bool TruncateLongestFirst(std::vector<Ids*> seqs, int64_t budget) {
  bool cut = false;
  for (;;) {
    int64_t total = 0;
    Ids* longest = nullptr;
    for (Ids* s : seqs) {
      total += static_cast<int64_t>(s->size());
      if (!longest || s->size() > longest->size()) longest = s;
    }
    if (total <= budget || longest == nullptr || longest->empty()) return cut;
    longest->pop_back();
    cut = true;
  }
}

struct Builder {
  const ClueTaskInfo& task;
  const Tokenizer& tok;
  const FeatureOptions& opt;
  FeatureStats* st;
  int cls, sep;

  // [CLS] parts[0] [SEP] parts[1] [SEP] ... ; segment 0 for the first part, pair_segment_b after.
  void Assemble(const std::vector<const Ids*>& parts, Ids* ids, Ids* types) const {
    ids->clear();
    types->clear();
    ids->push_back(cls);
    types->push_back(0);
    for (size_t p = 0; p < parts.size(); ++p) {
      const int32_t seg = p == 0 ? 0 : opt.pair_segment_b;
      ids->insert(ids->end(), parts[p]->begin(), parts[p]->end());
      ids->push_back(sep);
      types->insert(types->end(), parts[p]->size() + 1, seg);
    }
    st->max_tokens = std::max<int64_t>(st->max_tokens, static_cast<int64_t>(ids->size()));
  }

  Feature Classification(const Example& ex) const {
    Feature f;
    f.ids.resize(1);
    f.types.resize(1);
    f.label = ex.label;
    Ids a = tok.Encode(task.format == ClueFormat::kWsc ? WscMarkedText(ex) : ex.text_a);
    bool cut;
    if (ex.has_text_b) {
      Ids b = tok.Encode(ex.text_b);
      cut = TruncateLongestFirst({&a, &b}, opt.max_len - 3);
      Assemble({&a, &b}, &f.ids[0], &f.types[0]);
    } else {
      cut = TruncateLongestFirst({&a}, opt.max_len - 2);
      Assemble({&a}, &f.ids[0], &f.types[0]);
    }
    if (cut) ++st->truncated;
    return f;
  }

  Feature C3(const Example& ex) const {
    Feature f;
    f.label = ex.label;
    const Ids p0 = tok.Encode(ex.passage), q0 = tok.Encode(ex.question);
    bool any_cut = false;
    for (const std::string& choice : ex.choices) {
      Ids p = p0, q = q0, c = tok.Encode(choice);
      any_cut |= TruncateLongestFirst({&c, &q, &p}, opt.max_len - 4);
      f.ids.emplace_back();
      f.types.emplace_back();
      Assemble({&p, &q, &c}, &f.ids.back(), &f.types.back());
    }
    if (any_cut) ++st->truncated;
    return f;
  }

  // Tokens of `text` with every "#idiom<digits>#" blank replaced by 4 x [MASK].
  Ids EncodeWithBlanks(std::string_view text) const {
    Ids out;
    size_t pos = 0;
    for (;;) {
      size_t b = text.find("#idiom", pos);
      size_t e = std::string_view::npos;
      while (b != std::string_view::npos) {
        e = b + 6;
        while (e < text.size() && std::isdigit(static_cast<unsigned char>(text[e]))) ++e;
        if (e < text.size() && text[e] == '#') break;
        b = text.find("#idiom", b + 6);
      }
      const Ids part = tok.Encode(text.substr(pos, b == std::string_view::npos ? b : b - pos));
      out.insert(out.end(), part.begin(), part.end());
      if (b == std::string_view::npos) return out;
      out.insert(out.end(), 4, tok.vocab().mask_id());
      pos = e + 1;
    }
  }

  Feature Chid(const Example& ex) const {
    Feature f;
    f.label = ex.label;
    const int marker = ChidBlankTokenId(tok.vocab());
    const size_t bb = static_cast<size_t>(ex.blank_byte);
    Ids left = EncodeWithBlanks(std::string_view(ex.content).substr(0, bb));
    Ids right = EncodeWithBlanks(std::string_view(ex.content).substr(bb + ex.blank_marker.size()));
    bool any_cut = false;
    for (const std::string& cand : ex.choices) {
      Ids c = tok.Encode(cand);
      const int64_t budget = opt.max_len - 3 - static_cast<int64_t>(c.size()) - 1;
      if (budget < 0) {
        Fail("chid: max_len ", opt.max_len, " is too small for candidate '", cand, "' (", c.size(),
             " tokens + 4 special)");
      }
      const int64_t nl = static_cast<int64_t>(left.size()), nr = static_cast<int64_t>(right.size());
      int64_t keep_l = std::min(nl, budget / 2), keep_r = std::min(nr, budget - keep_l);
      keep_l = std::min(nl, budget - keep_r);
      if (keep_l < nl || keep_r < nr) any_cut = true;
      Ids text(left.end() - keep_l, left.end());
      text.push_back(marker);
      text.insert(text.end(), right.begin(), right.begin() + keep_r);
      f.ids.emplace_back();
      f.types.emplace_back();
      Assemble({&c, &text}, &f.ids.back(), &f.types.back());
    }
    if (any_cut) ++st->truncated;
    return f;
  }

  void Cmrc(const Example& ex, int64_t index, std::vector<Feature>* out) const {
    Ids q = tok.Encode(ex.question);
    if (static_cast<int64_t>(q.size()) > opt.max_query_len) {
      q.resize(opt.max_query_len);
      ++st->truncated;
    }
    const std::vector<Token> ctx = tok.Tokenize(ex.context);
    const int64_t window = opt.max_len - static_cast<int64_t>(q.size()) - 3;
    if (window < 1) {
      Fail("cmrc2018: max_len ", opt.max_len, " leaves no room for the context after a ", q.size(),
           "-token question (lower max_query_len)");
    }
    // The first locatable answer (training label).
    int64_t ans_s = -1, ans_e = -1;
    for (const CmrcAnswer& a : ex.answers) {
      if (a.start_char < 0) continue;
      const int64_t b = a.start_char, e = a.start_char + Utf8Length(a.text);
      for (size_t t = 0; t < ctx.size(); ++t) {
        if (ans_s < 0 && ctx[t].end > b) ans_s = static_cast<int64_t>(t);
        if (ctx[t].begin < e) ans_e = static_cast<int64_t>(t);
      }
      if (ans_s >= 0 && ans_e >= ans_s) break;
      ans_s = ans_e = -1;
    }
    const int64_t n = static_cast<int64_t>(ctx.size());
    const int64_t stride = std::max<int64_t>(1, std::min<int64_t>(opt.doc_stride, window));
    bool answered = false;
    for (int64_t w0 = 0;; w0 += stride) {
      const int64_t w1 = std::min(n, w0 + window);
      Feature f;
      f.example = index;
      f.ids.resize(1);
      f.types.resize(1);
      Ids c;
      for (int64_t t = w0; t < w1; ++t) c.push_back(ctx[t].id);
      Assemble({&q, &c}, &f.ids[0], &f.types[0]);
      const int64_t off = static_cast<int64_t>(q.size()) + 2;  // first context position
      f.char_begin.assign(f.ids[0].size(), -1);
      f.char_end.assign(f.ids[0].size(), -1);
      for (int64_t t = w0; t < w1; ++t) {
        f.char_begin[off + t - w0] = ctx[t].begin;
        f.char_end[off + t - w0] = ctx[t].end;
      }
      if (ans_s >= w0 && ans_e < w1 && ans_s >= 0) {
        f.start = static_cast<int>(off + ans_s - w0);
        f.end = static_cast<int>(off + ans_e - w0);
        f.has_answer = true;
        answered = true;
        ++st->windows_with_answer;
      }
      out->push_back(std::move(f));
      if (w1 >= n) break;
    }
    if (ans_s >= 0 && !answered) ++st->answers_not_in_any_window;
  }
};

}  // namespace

int ChidBlankTokenId(const Vocab& vocab) {
  const int u = vocab.Find("[unused1]");
  return u >= 0 ? u : vocab.mask_id();
}

int DefaultDocStride(int max_len) { return std::max(1, max_len / 4); }

std::vector<Feature> BuildFeatures(const ClueTaskInfo& task, const std::vector<Example>& examples,
                                   const Tokenizer& tokenizer, const FeatureOptions& opt,
                                   FeatureStats* stats) {
  FeatureStats local;
  FeatureStats* st = stats ? stats : &local;
  *st = FeatureStats();
  if (opt.max_len < 4) Fail(task.name, ": max_len must be >= 4, got ", opt.max_len);
  Builder b{task, tokenizer, opt, st, tokenizer.vocab().cls_id(), tokenizer.vocab().sep_id()};
  std::vector<Feature> out;
  out.reserve(examples.size());
  for (size_t i = 0; i < examples.size(); ++i) {
    const Example& ex = examples[i];
    switch (task.format) {
      case ClueFormat::kCmrc2018:
        b.Cmrc(ex, static_cast<int64_t>(i), &out);
        continue;
      case ClueFormat::kC3:
        out.push_back(b.C3(ex));
        break;
      case ClueFormat::kChid:
        out.push_back(b.Chid(ex));
        break;
      default:
        out.push_back(b.Classification(ex));
        break;
    }
    out.back().example = static_cast<int64_t>(i);
  }
  st->examples = static_cast<int64_t>(examples.size());
  st->features = static_cast<int64_t>(out.size());
  for (const Feature& f : out) st->sequences += static_cast<int64_t>(f.ids.size());
  return out;
}

}  // namespace roformer
