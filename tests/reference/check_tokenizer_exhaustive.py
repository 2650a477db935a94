#!/usr/bin/env python3
"""Exhaustive check of `roformer tokenize` against HF's slow BertTokenizer (not a ctest: ~1 min).

    VENV/bin/python tests/reference/check_tokenizer_exhaustive.py BUILD/roformer [--quick]

For every code point c (except surrogates and '\\n') a line "Xc" + "ac" + "c中" + " c." is tokenized
with do_lower_case=True and False, plus every NFC primary-composite pair (base + mark) and some
final-sigma contexts; tokens and ids must equal the slow tokenizer's (offsets are covered by the
fixture). Uses the shared Chinese vocab. Prints the first mismatches and exits 1 on any.
"""
import json
import os
import subprocess
import sys
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCAB = os.path.join(os.path.dirname(ROOT), "shared", "data", "vocab", "bert-chinese-vocab.txt")


def lines_to_check(quick):
    step = 7 if quick else 1
    out = []
    for cp in range(0, 0x110000, step):
        if 0xD800 <= cp <= 0xDFFF or cp == 10:
            continue
        c = chr(cp)
        out.append("X" + c + " a" + c + " " + c + "\u4e2d" + " " + c + ".")
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        d = unicodedata.decomposition(chr(cp))
        if d and not d.startswith("<") and len(d.split()) == 2:
            a, b = (chr(int(x, 16)) for x in d.split())
            out.append(a + b + " x" + a + b + "\u0316y")
    for ctx in ["\u03a3", "A\u03a3", "\u03a3A", "A\u0301\u03a3", "A\u03a3\u0301", "A\u03a3\u0301B",
                "A'\u03a3", "A\u03a3'", "\u00aa\u03a3", "A\u00ad\u03a3", "1\u03a3"]:
        out.append(ctx)
    return out


def main():
    binary = sys.argv[1]
    quick = "--quick" in sys.argv
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy as Slow

    lines = lines_to_check(quick)
    data = "\n".join(lines).encode("utf-8") + b"\n"
    bad = 0
    for lower in (True, False):
        slow = Slow(vocab_file=VOCAB, do_lower_case=lower)
        cmd = [binary, "tokenize", "--vocab", VOCAB] + ([] if lower else ["--no-lower-case"])
        res = subprocess.run(cmd, input=data, capture_output=True, check=True)
        outs = res.stdout.decode("utf-8").split("\n")
        assert outs[-1] == "" and len(outs) == len(lines) + 1, (len(outs), len(lines))
        for text, out in zip(lines, outs):
            got = json.loads(out)
            want = slow._tokenize(text)
            if got["tokens"] != want or got["ids"] != slow.convert_tokens_to_ids(want):
                bad += 1
                if bad <= 20:
                    print("MISMATCH lower=%s %s: got %s want %s" % (lower, ascii(text), ascii(got["tokens"]),
                                                                ascii(want)))
        print("lower=%s: %d lines checked" % (lower, len(lines)))
    print("mismatches:", bad)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
