#!/usr/bin/env python3
"""Generates data/tokenizer/unicode_tables.cc (Unicode 14.0.0) from Python's `unicodedata`.

Run from the repository root (python3 3.11 = Unicode 14.0.0, asserted below):
    python3 tests/reference/gen_unicode_tables.py && clang-format is NOT applied (the file is
    pre-formatted and fenced with `// clang-format off`).

The tables encode exactly what HF's slow BertTokenizer (tokenization_bert_legacy.py in transformers
5.x, BasicTokenizer) asks of `unicodedata` and of Python's `str`:
  * flags per code point (run-length ranges): clean_text drop (cp 0, U+FFFD, category C* except
    \\t\\n\\r: HF's _is_control tests cat.startswith("C"), Google's only Cc/Cf),
    separator (BERT _is_whitespace or Python str.isspace(), i.e. what str.split() splits on, which
    includes U+2028/U+2029 although they are neither Zs nor control), punctuation (ASCII 33-47,
    58-64, 91-96, 123-126 or category P*), Mn, "NFC may change a segment containing it",
    has-lowercase, has-NFD, and the two classes Python's final-sigma rule uses (cased /
    case-ignorable, derived empirically from str.lower() so they match CPython exactly);
  * canonical combining classes (ranges, non-zero only);
  * str.lower() mapping (full mapping: U+0130 -> "i\\u0307"; final sigma is contextual, handled in
    C++);
  * full (recursive) canonical decompositions, Hangul excluded (algorithmic in C++);
  * primary composites (pair -> composite) for NFC, Hangul excluded.
"""
import os
import sys
import unicodedata

assert unicodedata.unidata_version == "14.0.0", unicodedata.unidata_version

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "data", "tokenizer", "unicode_tables.cc")

MAX_CP = 0x110000
SBASE, LBASE, VBASE, TBASE = 0xAC00, 0x1100, 0x1161, 0x11A7
LCOUNT, VCOUNT, TCOUNT = 19, 21, 28
SCOUNT = LCOUNT * VCOUNT * TCOUNT

F_DROP, F_SEP, F_PUNCT, F_MN = 1, 2, 4, 8
F_NFC_UNSAFE, F_LOWER, F_NFD, F_CASED, F_CASE_IGN = 16, 32, 64, 128, 256


def is_surrogate(cp):
    return 0xD800 <= cp <= 0xDFFF


def is_hangul_syllable(cp):
    return SBASE <= cp < SBASE + SCOUNT


def canonical_decomp(cp):
    """Full recursive canonical decomposition (without Hangul), or None."""
    d = unicodedata.decomposition(chr(cp))
    if not d or d.startswith("<"):
        return None
    out = []
    for part in d.split():
        c = int(part, 16)
        sub = canonical_decomp(c)
        out.extend(sub if sub else [c])
    return out


def main():
    # Second characters of primary composites (they can compose with a previous character).
    compositions = {}
    composes_with_prev = set()
    for cp in range(MAX_CP):
        if is_surrogate(cp) or is_hangul_syllable(cp):
            continue
        d = unicodedata.decomposition(chr(cp))
        if not d or d.startswith("<"):
            continue
        parts = [int(p, 16) for p in d.split()]
        if len(parts) != 2:
            continue
        if unicodedata.normalize("NFC", chr(cp)) != chr(cp):
            continue  # composition exclusion / non-starter decomposition
        compositions[(parts[0], parts[1])] = cp
        composes_with_prev.add(parts[1])
    for cp in range(VBASE, VBASE + VCOUNT):
        composes_with_prev.add(cp)
    for cp in range(TBASE + 1, TBASE + TCOUNT):
        composes_with_prev.add(cp)

    flags = [0] * MAX_CP
    ccc = [0] * MAX_CP
    lower = {}
    decomp = {}
    for cp in range(MAX_CP):
        if is_surrogate(cp):
            flags[cp] = F_DROP  # never produced by the UTF-8 decoder
            continue
        ch = chr(cp)
        cat = unicodedata.category(ch)
        f = 0
        bert_ws = ch in " \t\n\r" or cat == "Zs"
        # HF's _is_control drops every C* category (Cc Cf Cn Co Cs); Google's only Cc/Cf.
        bert_ctrl = ch not in "\t\n\r" and cat.startswith("C")
        if cp == 0 or cp == 0xFFFD or bert_ctrl:
            f |= F_DROP
        elif bert_ws or ch.isspace():
            f |= F_SEP
        if (33 <= cp <= 47) or (58 <= cp <= 64) or (91 <= cp <= 96) or (123 <= cp <= 126) or \
                cat.startswith("P"):
            f |= F_PUNCT
        if cat == "Mn":
            f |= F_MN
        c = unicodedata.combining(ch)
        ccc[cp] = c
        if c != 0 or unicodedata.normalize("NFC", ch) != ch or cp in composes_with_prev:
            f |= F_NFC_UNSAFE
        low = ch.lower()
        if low != ch:
            f |= F_LOWER
            lower[cp] = [ord(x) for x in low]
        if unicodedata.normalize("NFD", ch) != ch:
            f |= F_NFD
            if not is_hangul_syllable(cp):
                dd = canonical_decomp(cp)
                assert dd and "".join(map(chr, dd)) == unicodedata.normalize("NFD", ch), hex(cp)
                decomp[cp] = dd
        # Final-sigma classes exactly as CPython's handle_capital_sigma sees them:
        #   t1: "<c>Σ" lowers to final sigma  <=> c cased and not case-ignorable
        #   t3: "A<c>Σ" lowers to final sigma <=> c case-ignorable or cased
        if cp != 0x3A3:
            t1 = (ch + "\u03a3").lower()[-1] == "\u03c2"
            t3 = ("A" + ch + "\u03a3").lower()[-1] == "\u03c2"
            if t1:
                f |= F_CASED
            elif t3:
                f |= F_CASE_IGN
        else:
            f |= F_CASED
        flags[cp] = f

    # Invariants the C++ relies on.
    # The BMP CJK fast path (U+3400-4DBF, U+4E00-9FFF) needs every code point there to be assigned
    # (not dropped) and stable under NFC/NFD/lower, non-punctuation.
    for cp in list(range(0x3400, 0x4DC0)) + list(range(0x4E00, 0xA000)):
        assert flags[cp] == 0 and ccc[cp] == 0, hex(cp)
    assert all(len(v) <= 3 for v in lower.values())
    assert all(len(v) <= 4 for v in decomp.values())
    for cp in range(MAX_CP):
        if is_surrogate(cp):
            continue
        ch = chr(cp)
        # With lower-casing, the C++ skips NFC: NFD(lower(NFC(x))) == NFD(lower(x)).
        a = unicodedata.normalize("NFD", unicodedata.normalize("NFC", ch).lower())
        b = unicodedata.normalize("NFD", ch.lower())
        assert a == b, hex(cp)
        # Lower-casing / NFD never creates separators (so no re-split is needed).
        if not (flags[cp] & (F_SEP | F_DROP)):
            for x in a + unicodedata.normalize("NFC", ch):
                assert not (flags[ord(x)] & F_SEP), hex(cp)

    with open(OUT, "w", encoding="utf-8") as f:
        w = f.write
        w("// GENERATED by tests/reference/gen_unicode_tables.py from Python unicodedata "
          "(Unicode 14.0.0). Do not edit.\n")
        w("// clang-format off\n")
        w('#include "data/tokenizer/unicode_tables.h"\n\nnamespace roformer::unicode {\n\n')
        w('const char kUnicodeVersion[] = "%s";\n\n' % unicodedata.unidata_version)

        def emit(name, ctype, items, per_line):
            w("const %s %s[] = {\n" % (ctype, name))
            for i in range(0, len(items), per_line):
                w("    " + ", ".join(items[i:i + per_line]) + ",\n")
            w("};\n")
            w("const int %sSize = %d;\n\n" % (name, len(items)))

        # Flag ranges: {start, flags}; a range runs until the next start.
        ranges = []
        for cp in range(MAX_CP):
            if not ranges or ranges[-1][1] != flags[cp]:
                ranges.append((cp, flags[cp]))
        emit("kPropRanges", "PropRange", ["{0x%X,%d}" % r for r in ranges], 8)

        cranges = []
        for cp in range(MAX_CP):
            if ccc[cp] == 0:
                continue
            if cranges and cranges[-1][1] == cp - 1 and cranges[-1][2] == ccc[cp]:
                cranges[-1][1] = cp
            else:
                cranges.append([cp, cp, ccc[cp]])
        emit("kCccRanges", "CccRange", ["{0x%X,0x%X,%d}" % tuple(r) for r in cranges], 6)

        items = []
        for cp in sorted(lower):
            v = lower[cp] + [0] * (3 - len(lower[cp]))
            items.append("{0x%X,{0x%X,0x%X,0x%X}}" % (cp, v[0], v[1], v[2]))
        emit("kLowerMap", "Mapping3", items, 4)

        items = []
        for cp in sorted(decomp):
            v = decomp[cp] + [0] * (4 - len(decomp[cp]))
            items.append("{0x%X,{0x%X,0x%X,0x%X,0x%X}}" % (cp, v[0], v[1], v[2], v[3]))
        emit("kDecompMap", "Mapping4", items, 3)

        items = ["{0x%XULL,0x%X}" % ((a << 21) | b, c) for (a, b), c in sorted(compositions.items())]
        emit("kCompositions", "Composition", items, 5)

        w("}  // namespace roformer::unicode\n")
    print("wrote %s: %d flag ranges, %d ccc ranges, %d lower, %d decomp, %d compositions" %
          (OUT, len(ranges), len(cranges), len(lower), len(decomp), len(compositions)))


if __name__ == "__main__":
    sys.exit(main())
