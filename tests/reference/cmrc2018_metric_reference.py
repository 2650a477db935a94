#!/usr/bin/env python3
"""CMRC2018 EM/F1 reference for tests/unit/clue_metrics_test.cc.

This is OUR transcription of the rules of the official evaluation script
(ymcui/cmrc2018, squad-style-data/cmrc2018_evaluate.py, "v5 - special"), written from the
published rules, not a copy of that script. Differences, on purpose:
  * Python 3 instead of Python 2;
  * nltk.word_tokenize (used by the official script on non-Chinese runs) is replaced by the small
    approximation `word_tokenize` below, which data/clue/clue_metrics.cc implements too. nltk is
    not available here; the approximation agrees with nltk on plain words, numbers and the
    punctuation used in the test cases;
  * Python 3's str.lower() is used; the C++ side covers ASCII/Latin/Greek/Cyrillic/full-width.

Rules: lower() + strip(); CJK chars in [U+4E00, U+9FA5] and the punctuation list are single
tokens; with punctuation removal the punctuation is dropped without ending a run; F1 = max over
references of the F1 of the longest common contiguous token run; EM = equality after
lower/strip/punctuation removal; corpus scores = 100 * mean.

Run: python3 tests/reference/cmrc2018_metric_reference.py  (prints the expected values).
"""
import re

# The list contains the two-character string '……', which never equals one character.
PUNCT = ['-', ':', '_', '*', '^', '/', '\\', '~', '`', '+', '=',
         '\uff0c', '\u3002', '\uff1a', '\uff1f', '\uff01', '\u201c', '\u201d', '\uff1b',
         '\u2019', '\u300a', '\u300b', '\u2026\u2026', '\u00b7', '\u3001', '\u300c', '\u300d',
         '\uff08', '\uff09', '\uff0d', '\uff5e', '\u300e', '\u300f']
ALONE = set('?!;@#$%&()[]{}<>"')


def word_tokenize(run):
    out = []
    for chunk in run.split():
        cur = ''
        i = 0
        while i < len(chunk):
            c = chunk[i]
            if chunk[i:i + 3] == '...':
                if cur:
                    out.append(cur)
                cur = ''
                out.append('...')
                i += 3
                continue
            if c in ALONE or (c in ',:' and not (i + 1 < len(chunk) and chunk[i + 1].isdigit()
                                                   and chunk[i + 1] in '0123456789')):
                if cur:
                    out.append(cur)
                cur = ''
                out.append(c)
            else:
                cur += c
            i += 1
        if cur:
            out.append(cur)
    if out and len(out[-1]) > 1 and out[-1][-1] == '.' and out[-1][-2] != '.':
        out[-1] = out[-1][:-1]
        out.append('.')
    return out


def mixed_segmentation(s, rm_punc):
    s = s.lower().strip()
    segs, run = [], ''
    for ch in s:
        if rm_punc and ch in PUNCT:
            continue
        if re.search('[\u4e00-\u9fa5]', ch) or ch in PUNCT:
            if run:
                segs.extend(word_tokenize(run))
                run = ''
            segs.append(ch)
        else:
            run += ch
    if run:
        segs.extend(word_tokenize(run))
    return segs


def remove_punctuation(s):
    return ''.join(ch for ch in s.lower().strip() if ch not in PUNCT)


def lcs_len(a, b):
    best = 0
    m = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a)):
        for j in range(len(b)):
            if a[i] == b[j]:
                m[i + 1][j + 1] = m[i][j] + 1
                best = max(best, m[i + 1][j + 1])
    return best


def f1(answers, pred):
    scores = [0.0]
    p = mixed_segmentation(pred, True)
    for a in answers:
        t = mixed_segmentation(a, True)
        n = lcs_len(t, p)
        if n == 0:
            continue
        prec, rec = n / len(p), n / len(t)
        scores.append(2 * prec * rec / (prec + rec))
    return max(scores)


def em(answers, pred):
    return 1.0 if any(remove_punctuation(a) == remove_punctuation(pred) for a in answers) else 0.0


CASES = [
    (["光荣和ω-force", "光荣和ω-force"], "光荣和ω-force"),
    (["1862年"], "1862年。"),
    (["北京大学"], "北京"),
    (["天安门广场", "广场"], "在天安门"),
    (["Hello World 2010年"], "hello world"),
    (["abc-def"], "abcdef"),
    (["好…"], "好"),
    (["美国海军"], ""),
    (["甲乙丙丁"], "甲丙丁"),
    (["  ABC "], "abc"),
    (["你好，世界"], "你好世界"),
    (["1,000元"], "1000元"),
    (["《红楼梦》的作者"], "红楼梦"),
    (["the U.S. army."], "U.S. army"),
]

if __name__ == '__main__':
    tot_em = tot_f1 = 0.0
    for answers, pred in CASES:
        e, f = em(answers, pred), f1(answers, pred)
        tot_em += e
        tot_f1 += f
        print(f'{answers!r:40} {pred!r:16} seg={mixed_segmentation(answers[0], True)} '
              f'em={e} f1={f!r}')
    n = len(CASES)
    print(f'corpus: em={100 * tot_em / n!r} f1={100 * tot_f1 / n!r} count={n}')
