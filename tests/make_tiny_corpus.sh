#!/usr/bin/env bash
# Shared by the CLI and mpirun tests: a deterministic tiny Chinese corpus (random common characters,
# 1-4 sentences per document), a WordPiece vocab built from it, and prepared shards (5 % held out).
#   bash tests/make_tiny_corpus.sh ROFORMER_BINARY OUT_DIR SEED DOCS
# writes OUT_DIR/corpus.txt, OUT_DIR/vocab.txt and OUT_DIR/shards/.
set -euo pipefail
R=$1 OUT=$2 SEED=$3 DOCS=$4
mkdir -p "$OUT"
python3 - "$OUT/corpus.txt" "$SEED" "$DOCS" <<'PY'
import random, sys
random.seed(int(sys.argv[2]))
chars = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严"
punct = "，。！？"
with open(sys.argv[1], "w") as f:
    for d in range(int(sys.argv[3])):
        sents = []
        for s in range(random.randint(1, 4)):
            n = random.randint(4, 20)
            sents.append("".join(random.choice(chars) for _ in range(n)) + random.choice(punct))
        f.write("".join(sents) + "\n")
PY
"$R" vocab build --corpus "$OUT/corpus.txt" --size 600 --out "$OUT/vocab.txt" >/dev/null 2>&1
"$R" data prepare --corpus "$OUT/corpus.txt" --vocab "$OUT/vocab.txt" --out "$OUT/shards" \
  --eval-fraction 0.05 >/dev/null
