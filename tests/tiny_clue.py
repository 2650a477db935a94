"""Synthetic CLUE-format files shared by the shell tests that fine-tune on made-up data
(tests/cli/multitask_cli.sh, tests/cli/recompute_finetune.sh, tests/mpi/multitask_finetune_dp.sh).
Import it from a test's embedded Python after `sys.path.insert(0, "<repo>/tests")`."""
import json
import os


def vocab_words(folder, end):
    """The WordPiece entries [5, end) of folder/vocab.txt (after the special tokens): test words."""
    with open(os.path.join(folder, "vocab.txt"), encoding="utf-8") as f:
        return [line.strip() for line in f][5:end]


def write_jsonl(path, rows):
    """One JSON object per line (UTF-8, not escaped), creating the folder: CLUE's .json format."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def write_chid(out_dir, name, n, rng, sent, idioms, counter, with_answers=True):
    """ChID in the CLUE format: `n` passages of two paragraphs with 1 and 2 "#idiomNNNNNN#" blanks
    (3 per passage, distinct answers, so Hungarian decoding applies), 10 candidates drawn from
    `idioms`; answers in <name>_answer.json unless with_answers is false. `counter` is a one-item
    list numbering the blanks across calls; `sent()` makes a sentence; `rng` a random.Random."""
    ans = {}
    with open(f"{out_dir}/{name}.json", "w", encoding="utf-8") as f:
        for _ in range(n):
            order = rng.sample(range(10), 3)
            content = []
            for p in range(2):
                text = sent()
                for b in range(1 + p):
                    tag = "#idiom%06d#" % counter[0]
                    counter[0] += 1
                    ans[tag] = order.pop()
                    text += tag + sent()
                content.append(text)
            f.write(json.dumps({"candidates": rng.sample(idioms, 10), "content": content},
                               ensure_ascii=False) + "\n")
    if with_answers:
        json.dump(ans, open(f"{out_dir}/{name}_answer.json", "w"))
