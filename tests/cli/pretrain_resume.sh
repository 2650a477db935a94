#!/usr/bin/env bash
# label: unit
# Resume is bit-identical: N steps in one process == N/2 steps, checkpoint, a fresh process, N/2
# more (dropout on, RealFormer + RoPE, Post-LN). Also: --no-resume refuses to clobber a run.
set -euo pipefail
R=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
python3 - "$T/corpus.txt" <<'PY'
import random, sys
random.seed(5)
chars = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严"
punct = "，。！？"
with open(sys.argv[1], "w") as f:
    for d in range(400):
        sents = []
        for s in range(random.randint(1, 4)):
            n = random.randint(4, 20)
            sents.append("".join(random.choice(chars) for _ in range(n)) + random.choice(punct))
        f.write("".join(sents) + "\n")
PY
"$R" vocab build --corpus "$T/corpus.txt" --size 600 --out "$T/vocab.txt" >/dev/null
"$R" data prepare --corpus "$T/corpus.txt" --vocab "$T/vocab.txt" --out "$T/shards" --eval-fraction 0.05 >/dev/null
SETS=(--set model.hidden_size=32 --set model.num_hidden_layers=2 --set model.num_attention_heads=2
      --set model.intermediate_size=64 --set model.realformer=true --set train.steps=8
      --set train.micro_batch=4 --set train.global_batch=8 --set train.seq_len=32 --set train.lr=1e-3
      --set train.warmup_steps=2 --set train.log_every=1 --set train.eval_every=4 --set train.eval_samples=8
      --set data.corpus="$T/shards" --set data.vocab="$T/vocab.txt" --set model.max_position_embeddings=64)
"$R" pretrain "${SETS[@]}" --run-dir "$T/full" 2>"$T/full.log"
"$R" pretrain "${SETS[@]}" --run-dir "$T/split" --max-steps 4 2>"$T/split1.log"
grep -q "stopped after 4 of 8 steps" "$T/split1.log" || { cat "$T/split1.log"; echo "FAIL: no early stop"; exit 1; }
"$R" pretrain "${SETS[@]}" --run-dir "$T/split" 2>"$T/split2.log"
grep -q "resumed from" "$T/split2.log" || { cat "$T/split2.log"; echo "FAIL: did not resume"; exit 1; }
losses() { python3 -c "
import json,sys
for l in open(sys.argv[1]):
    r=json.loads(l)
    if 'loss' in r: print(r['step'], repr(r['loss']), repr(r['grad_norm']))
" "$1"; }
diff <(losses "$T/full/metrics.jsonl") <(losses "$T/split/metrics.jsonl") || { echo "FAIL: loss sequences differ"; exit 1; }
[ "$(losses "$T/full/metrics.jsonl" | wc -l)" -eq 8 ] || { echo "FAIL: expected 8 loss records"; exit 1; }
a=$(ls -d "$T"/full/checkpoints/step_00000008); b=$(ls -d "$T"/split/checkpoints/step_00000008)
for f in "$a"/chunk-*.bin; do cmp "$f" "$b/$(basename "$f")" || { echo "FAIL: final weights differ ($f)"; exit 1; }; done
"$R" ckpt verify "$b" >/dev/null
# The loss went down over the run (sanity that the optimizer is wired).
python3 - "$T/full/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
assert rows[-1]["loss"] < rows[0]["loss"], (rows[0]["loss"], rows[-1]["loss"])
PY
# --no-resume refuses to clobber without --force.
if "$R" pretrain "${SETS[@]}" --run-dir "$T/full" --no-resume 2>"$T/refuse.log"; then echo "FAIL: clobbered"; exit 1; fi
grep -q "add --force" "$T/refuse.log" || { cat "$T/refuse.log"; exit 1; }
echo "resume: bit-identical over 8 steps; --no-resume guarded"
