#!/usr/bin/env python3
"""Builds tests/reference/fixtures/tokenizer_cases.jsonl: BERT tokenization reference cases.

Run from the repository root (needs transformers + tokenizers; Python 3.11 = Unicode 14.0.0):
    VENV/bin/python tests/reference/make_tokenizer_fixture.py

Reference: HF's slow BertTokenizer with the Chinese BERT vocab (../shared/data/vocab/
bert-chinese-vocab.txt), do_lower_case=True. In transformers 5.x the slow class is
`BertTokenizerLegacy` (`BertTokenizer` became the Rust-backed one); in 4.x it is `BertTokenizer`.
The slow tokenizer has no offsets, so offsets come from the Rust (fast) tokenizer built the same
way as BertTokenizerFast (BertNormalizer + BertPreTokenizer + WordPiece, max 100 chars per word);
for `str` input the tokenizers binding reports offsets in code points, which is what we store.
Every real sentence must give identical tokens from slow and fast; sentences where they disagree
are reported and dropped. Synthetic edge cases where they disagree are kept with the slow tokens
(the semantic reference) and "offsets": null, so the C++ test checks tokens/ids only; currently
these are: final sigma (Python's str.lower() gives U+03C2 at a word end, Rust's char lower-casing
never does) and unassigned code points (HF slow's _is_control deletes every C* category, incl. Cn;
the Rust normalizer keeps some Cn code points such as U+0378). Known slow/fast differences: NFC
(slow only), Python vs Rust whitespace/lower-casing and Unicode versions. Literal "[UNK]"-style
special token strings in text (both HF tokenizers keep them whole, Google's and ours split them)
are avoided.

Output lines: {"text": str, "tokens": [...], "ids": [...], "offsets": [[s, e], ...], "source": str}
(no [CLS]/[SEP]). Real sentences are a handful of CLUE strings picked deterministically by feature
(first matches in sorted file order), truncated to 200 code points; a few sentences as test strings
only, never whole data files.
"""
import glob
import json
import os
import sys
import unicodedata

assert unicodedata.unidata_version == "14.0.0", unicodedata.unidata_version

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
VOCAB = os.path.join(SHARED, "vocab", "bert-chinese-vocab.txt")
OUT = os.path.join(ROOT, "tests", "reference", "fixtures", "tokenizer_cases.jsonl")
MAX_LEN = 200

SYNTHETIC = [
    ("empty", ""),
    ("whitespace-only", " \t \u3000\u00a0 "),
    ("google-basic", " \tHeLLo!how  \n Are yoU?  "),
    ("google-accent", "H\u00e9llo"),
    ("google-full", "UNwant\u00e9d,running"),
    ("google-cjk", "ah\u535a\u63a8zz"),
    ("tabs", "\tTab\tseparated\twords\t123\t"),
    ("decomposed-accent", "He\u0301llo cafe\u0301 na\u0308ive"),
    ("dotted-capital-i", "\u0130stanbul \u0130 I\u0307"),
    ("control-chars", "ctrl\x01\x02chars\x7f\x1f here\x0b\x0cand\x1e\x1cthere"),
    ("nul-and-replacement", "a\x00b \ufffdc\ufffd d"),
    ("format-chars", "zero\u200bwidth\u200djoin\ufeffbom soft\u00adhyphen \u2060wj"),
    ("nbsp-and-spaces", "a\u00a0b\u2002c\u3000d\u202fe\u205ff\u1680g"),
    ("line-separators", "line\u2028separator\u2029para\u0085nel"),
    ("long-word-101", "a" * 101),
    ("long-word-100", "b" * 100),
    ("long-word-with-punct", "x" * 150 + "," + "yz"),
    ("combining-after-cjk", "\u4e2d\u0301\u6587 \u0301alone"),
    ("final-sigma", "\u039f\u0394\u039f\u03a3 \u03a3\u0391\u03a3. \u0391\u03a3'\u0392"),
    ("full-width", "\uff21\uff22\uff23\uff11\uff12\uff13\uff0c\uff28\uff45\uff4c\uff4c\uff4f\uff01\uff1f"),
    ("emoji", "emoji \U0001f600\U0001f44d\U0001f3fd ok \u2764\ufe0f\U0001f1e8\U0001f1f3"),
    ("hangul-kana", "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8 \u30ab\u30bf\u30ab\u30ca \u3072\u3089\u304c\u306a \uff76\uff80\uff76\uff85"),
    ("ascii-symbols", "$100 ^_^ a+b=c <tag> | ~ `q` {x} [y] @z #w"),
    ("letterlike", "\u212a\u2126\u212b \u00df\u1e9e \u01c4\u01c5\u01c6 \ufb01x"),
    ("compat-ideographs", "\uf900\ufa0e\uf91f \U0002f800"),
    ("cjk-ext-b", "\U00020000\U0002a6d6\u3400"),
    ("symbols-not-punct", "\uffe5100 30\u2103 \u2460\u2461 \u3007 \u00a9\u00ae"),
    ("cjk-punct", "\u300a\u4e66\u300b\u3010\u6ce8\u3011\u201c\u5f15\u201d\u2026\u2026\u2014\u00b7\u3001"),
    ("mixed-digits", "2021\u5e74\u0033\u6708\u0035\u65e5 3.14159 1,000,000 v2.0-beta"),
    ("greek-cyrillic", "\u0391\u03b8\u03ae\u03bd\u03b1 \u041c\u043e\u0441\u043a\u0432\u0430 \u00c5ngstr\u00f6m"),
    ("url-email", "https://www.example.com/path?q=1&r=2 user@example.com"),
    ("crlf", "line one\r\nline two\r"),
    ("private-use-unassigned", "a\ue000b \U000f0000c \u0378d"),
    ("greek-varia-nfc", "x\u1fefy \u037e\u0387"),
]

FEATURES = [
    # (name, predicate, how many)
    ("cjk-only", lambda s: all(0x4E00 <= ord(c) <= 0x9FFF for c in s), 3),
    ("english", lambda s: sum(c.isascii() and c.isalpha() for c in s) >= 8, 6),
    ("digits", lambda s: sum(c.isdigit() and c.isascii() for c in s) >= 4, 4),
    ("full-width", lambda s: any(0xFF01 <= ord(c) <= 0xFF5E for c in s), 4),
    ("emoji", lambda s: any(ord(c) >= 0x1F000 for c in s), 3),
    ("ideographic-space", lambda s: "\u3000" in s, 3),
    ("u2028", lambda s: "\u2028" in s, 3),
    ("format-char", lambda s: any(unicodedata.category(c) == "Cf" for c in s), 3),
    ("nbsp", lambda s: "\u00a0" in s, 2),
    ("accented-latin", lambda s: any(0xC0 <= ord(c) <= 0x24F for c in s), 2),
    ("kana-hangul", lambda s: any(0x3040 <= ord(c) <= 0x30FF or 0xAC00 <= ord(c) <= 0xD7A3 for c in s), 2),
    ("tab", lambda s: "\t" in s, 2),
    ("cjk-punct", lambda s: any(c in s for c in "\u300a\u3010\u201c\u2026\u3001"), 3),
    ("symbols", lambda s: any(unicodedata.category(c).startswith("S") and ord(c) > 0x7F for c in s), 2),
    ("compat-ideograph", lambda s: any(0xF900 <= ord(c) <= 0xFAFF for c in s), 2),
    ("long-latin-word", lambda s: any(len(w) > 20 and w.isascii() for w in s.split()), 2),
]


def strings_of(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, list):
        for x in obj:
            yield from strings_of(x)
    elif isinstance(obj, dict):
        for k in sorted(obj):
            yield from strings_of(obj[k])


def clue_strings():
    for path in sorted(glob.glob(os.path.join(SHARED, "clue", "*", "*.json"))):
        rel = os.path.relpath(path, SHARED)
        with open(path, "rb") as f:
            data = f.read().decode("utf-8")
        if data.lstrip().startswith("[") or rel.startswith("clue/cmrc2018"):
            docs = [json.loads(data)]
        else:
            docs = [json.loads(line) for line in data.split("\n") if line.strip()]
        for doc in docs:
            for s in strings_of(doc):
                if len(s) >= 6 and not any(t in s for t in ("[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                                            "[PAD]")):
                    yield rel, s


def load_vocab():
    with open(VOCAB, "rb") as f:
        lines = f.read().decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def main():
    try:
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy as Slow
    except ImportError:  # transformers 4.x
        from transformers import BertTokenizer as Slow
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordPiece

    vocab_list = load_vocab()
    slow = Slow(vocab_file=VOCAB, do_lower_case=True)
    assert slow.vocab_size == len(vocab_list) == 21128, (slow.vocab_size, len(vocab_list))
    fast = Tokenizer(WordPiece({t: i for i, t in enumerate(vocab_list)}, unk_token="[UNK]",
                               max_input_chars_per_word=100))
    fast.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                 strip_accents=None, lowercase=True)
    fast.pre_tokenizer = pre_tokenizers.BertPreTokenizer()

    def reference(text):
        toks = slow.tokenize(text)
        assert toks == slow._tokenize(text), text
        ids = slow.convert_tokens_to_ids(toks)
        enc = fast.encode(text, add_special_tokens=False)
        if enc.tokens != toks or enc.ids != ids:
            return None
        return {"tokens": toks, "ids": ids, "offsets": [list(o) for o in enc.offsets]}

    cases, dropped = [], []
    for name, text in SYNTHETIC:
        ref = reference(text)
        if ref is None:
            dropped.append(("synthetic:" + name + " (kept, slow tokens, no offsets)", text))
            toks = slow.tokenize(text)
            ref = {"tokens": toks, "ids": slow.convert_tokens_to_ids(toks), "offsets": None}
        cases.append(dict(text=text, **ref, source="synthetic:" + name))

    need = {name: n for name, _, n in FEATURES}
    seen = set()
    for rel, s in clue_strings():
        if all(v == 0 for v in need.values()):
            break
        s = s[:MAX_LEN]
        if s in seen:
            continue
        for name, pred, _ in FEATURES:
            if need[name] > 0 and pred(s):
                ref = reference(s)
                if ref is None:
                    dropped.append((rel + ":" + name + " (dropped)", s))
                    break
                seen.add(s)
                need[name] -= 1
                cases.append(dict(text=s, **ref, source=rel + ":" + name))
                break

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        for c in cases:
            f.write(json.dumps(c, ensure_ascii=True) + "\n")
    real = sum(not c["source"].startswith("synthetic") for c in cases)
    print("wrote %s: %d cases (%d real, %d synthetic), %d bytes" %
          (OUT, len(cases), real, len(cases) - real, os.path.getsize(OUT)))
    for k, v in need.items():
        if v:
            print("  feature %s: %d fewer sentences than wanted (not in the data)" % (k, v))
    for src, text in dropped:
        print("  slow != fast:", src, ascii(text[:80]))
    assert real >= 40 and len(cases) - real >= 10


if __name__ == "__main__":
    sys.exit(main())
