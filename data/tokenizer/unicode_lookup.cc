// Lookups over the generated Unicode tables (unicode_tables.cc). Hangul syllables are handled
// algorithmically (Unicode ch. 3.12), everything else by binary search; Props() of the BMP comes
// from a flat table built once on first use, since it is called for every non-ASCII code point.
#include <algorithm>
#include <memory>

#include "data/tokenizer/unicode_tables.h"

namespace roformer::unicode {
namespace {

constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr uint32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

uint16_t PropsSearch(uint32_t cp) {
  const PropRange* end = kPropRanges + kPropRangesSize;
  const PropRange* it = std::upper_bound(
      kPropRanges, end, cp, [](uint32_t c, const PropRange& r) { return c < r.start; });
  return (it - 1)->flags;  // kPropRanges[0].start == 0
}

const uint16_t* BmpProps() {
  static const std::unique_ptr<uint16_t[]> table = [] {
    std::unique_ptr<uint16_t[]> t(new uint16_t[0x10000]);
    for (int i = 0; i < kPropRangesSize && kPropRanges[i].start < 0x10000; ++i) {
      uint32_t end =
          i + 1 < kPropRangesSize ? std::min<uint32_t>(kPropRanges[i + 1].start, 0x10000) : 0x10000;
      std::fill(t.get() + kPropRanges[i].start, t.get() + end, kPropRanges[i].flags);
    }
    return t;
  }();
  return table.get();
}

}  // namespace

uint16_t Props(uint32_t cp) {
  static const uint16_t* bmp = BmpProps();
  if (cp < 0x10000) return bmp[cp];
  if (cp > 0x10FFFF) return kDrop;
  return PropsSearch(cp);
}

uint8_t Ccc(uint32_t cp) {
  if (cp < 0x300) return 0;
  const CccRange* end = kCccRanges + kCccRangesSize;
  const CccRange* it = std::upper_bound(kCccRanges, end, cp,
                                        [](uint32_t c, const CccRange& r) { return c < r.first; });
  if (it == kCccRanges) return 0;
  --it;
  return cp <= it->last ? it->ccc : 0;
}

int LowerFull(uint32_t cp, uint32_t out[3]) {
  const Mapping3* end = kLowerMap + kLowerMapSize;
  const Mapping3* it =
      std::lower_bound(kLowerMap, end, cp, [](const Mapping3& m, uint32_t c) { return m.cp < c; });
  if (it == end || it->cp != cp) {
    out[0] = cp;
    return 1;
  }
  int n = 0;
  while (n < 3 && it->to[n] != 0) {
    out[n] = it->to[n];
    ++n;
  }
  return n;
}

int DecomposeFull(uint32_t cp, uint32_t out[4]) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    uint32_t s = cp - kSBase;
    out[0] = kLBase + s / kNCount;
    out[1] = kVBase + (s % kNCount) / kTCount;
    uint32_t t = s % kTCount;
    if (t == 0) return 2;
    out[2] = kTBase + t;
    return 3;
  }
  const Mapping4* end = kDecompMap + kDecompMapSize;
  const Mapping4* it =
      std::lower_bound(kDecompMap, end, cp, [](const Mapping4& m, uint32_t c) { return m.cp < c; });
  if (it == end || it->cp != cp) {
    out[0] = cp;
    return 1;
  }
  int n = 0;
  while (n < 4 && it->to[n] != 0) {
    out[n] = it->to[n];
    ++n;
  }
  return n;
}

uint32_t Compose(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  uint64_t key = (static_cast<uint64_t>(a) << 21) | b;
  const Composition* end = kCompositions + kCompositionsSize;
  const Composition* it = std::lower_bound(
      kCompositions, end, key, [](const Composition& c, uint64_t k) { return c.pair < k; });
  return it != end && it->pair == key ? it->composite : 0;
}

}  // namespace roformer::unicode
