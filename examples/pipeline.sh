#!/usr/bin/env bash
# cmsd in shell pipelines, with the offline default model (Gemma 3 270M, no network needed).
# The first run converts the model once (a minute or two); later runs load it from the cache.
set -euo pipefail
cd "$(dirname "$0")"

# One German line per English line, written to a file while the run goes on.
german=$(mktemp)
trap 'rm -f "$german"' EXIT
cmsd translate --src en --tgt de -o "$german" news.en.txt
paste -d '\n' news.en.txt "$german"

# Input from another program, output cut short: head keeps two lines, and cmsd stops quietly
# (exit code 0, so `set -o pipefail` is satisfied) when it writes the third.
sort news.en.txt | cmsd translate --src en --tgt de | head -2

# Per-line counters as JSONL, summed into one acceptance rate.
cmsd translate --src en --tgt de --jsonl news.en.txt | python3 -c '
import json, sys
records = [json.loads(line) for line in sys.stdin]
drafted = sum(record["drafted"] for record in records)
accepted = sum(record["accepted"] for record in records)
calls = sum(record["target_calls"] for record in records)
tokens = sum(record["new_tokens"] for record in records)
print(f"{len(records)} lines, {tokens} tokens in {calls} target calls, "
      f"acceptance {accepted}/{drafted} = {accepted / drafted:.0%}")
'
