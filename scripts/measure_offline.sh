#!/usr/bin/env bash
# Record the offline default's figures on WMT14 en-de: speed and memory against every baseline
# (lines 1-50), calibration (lines 1-100) and its effect (lines 101-130), and real translate and
# summarize runs. Run it alone on an idle machine: timings from a loaded machine are not comparable.
# Usage: scripts/measure_offline.sh DATA_DIR OUT_DIR   (DATA_DIR holds wmt14-en-de/ and cnn-dm/)
set -euo pipefail
DATA=${1:?give the data folder that holds wmt14-en-de/ and cnn-dm/}
OUT=${2:?give an output folder}
mkdir -p "$OUT"
EN=$DATA/wmt14-en-de/newstest2014.1000.en
DE=$DATA/wmt14-en-de/newstest2014.1000.de

/usr/bin/time -v cmsd bench --task translate --src en --tgt de --source "$EN" --reference "$DE" --limit 50 \
  --methods ar,hf-static,hf-heuristic,hf-confidence,static,cmsd,cmsd-relaxed \
  --json "$OUT/bench50.json" --csv "$OUT/bench50.csv" --plot "$OUT/bench50.png" > "$OUT/bench50.txt" 2> "$OUT/bench50.err"

# The default method list on the first 30 lines, as a user runs it.
cmsd bench --task translate --src en --tgt de --source "$EN" --reference "$DE" --limit 30 \
  --json "$OUT/bench30.json" > "$OUT/bench30.txt" 2> "$OUT/bench30.err"

# Peak memory of a target-only run, to compare with the maximum resident set size of the run above.
/usr/bin/time -v cmsd bench --task translate --src en --tgt de --source "$EN" --limit 50 --methods ar \
  --draft none > "$OUT/bench50_ar_only.txt" 2> "$OUT/bench50_ar_only.err"

cmsd calibrate --task translate --src en --tgt de --source "$EN" --limit 100 --out "$OUT/profile.json" \
  > "$OUT/calibrate.txt" 2> "$OUT/calibrate.err"
sed -n 101,130p "$EN" > "$OUT/lines101-130.en"
sed -n 101,130p "$DE" > "$OUT/lines101-130.de"
for variant in default profile; do
  extra=()
  [ "$variant" = profile ] && extra=(--profile "$OUT/profile.json")
  cmsd bench --task translate --src en --tgt de --source "$OUT/lines101-130.en" --reference "$OUT/lines101-130.de" \
    --methods ar,static,cmsd "${extra[@]}" --json "$OUT/bench101_$variant.json" > "$OUT/bench101_$variant.txt" 2> "$OUT/bench101_$variant.err"
done

head -20 "$EN" > "$OUT/first20.en"
cmsd translate --src en --tgt de --jsonl "$OUT/first20.en" > "$OUT/translate20.jsonl" 2> "$OUT/translate20.err"
head -3 "$DATA/cnn-dm/test.100.source" > "$OUT/three_articles.txt"
cmsd summarize --jsonl "$OUT/three_articles.txt" > "$OUT/summarize3.jsonl" 2> "$OUT/summarize3.err"

# The live view, captured from a terminal every 3 seconds (needs tmux).
sed -n 2,5p "$EN" > "$OUT/four.en"
if command -v tmux > /dev/null; then
  tmux new-session -d -s cmsd-live -x 150 -y 45 "cmsd translate --src en --tgt de '$OUT/four.en' > '$OUT/four.de'; sleep 4"
  : > "$OUT/live_view.txt"
  while tmux has-session -t cmsd-live 2> /dev/null; do
    { echo "----- $(date +%T)"; tmux capture-pane -p -t cmsd-live; } >> "$OUT/live_view.txt" 2> /dev/null || true
    sleep 3
  done
fi
