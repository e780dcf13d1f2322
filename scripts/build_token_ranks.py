"""Write the token-frequency ranking that the self-int8-top drafts use for the Gemma 3 tokenizer.

Counts the Gemma 3 tokens of held-out text, the parts of the project's test sets that no reported
measurement uses: newstest2014 lines 1001-3003 in English and German, newstest2016 English and
Romanian, and the CNN/DailyMail stories and highlights outside the first 100. Then stores the ids
of the most frequent tokens, most frequent first, as little-endian int32. Tokens never seen are not
stored. Special and byte-fallback tokens come first, so control tokens and any byte stay draftable.

Usage: python scripts/build_token_ranks.py DATA_DIR TOKENIZER_DIR
"""

from __future__ import annotations

import collections
import sys
from array import array
from pathlib import Path

from transformers import AutoTokenizer

CORPORA = (
    "wmt14-en-de/newstest2014.rest.en",
    "wmt14-en-de/newstest2014.rest.de",
    "wmt16-en-ro/newstest2016.en",
    "wmt16-en-ro/newstest2016.ro",
    "cnn-dm/test.rest.source",
    "cnn-dm/test.rest.target",
)
KEEP = 65536
OUT = Path(__file__).resolve().parent.parent / "cmsd_cli" / "models" / "data" / "gemma3_token_ranks.bin"


def main(data_dir: str, tokenizer_dir: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    counts: collections.Counter[int] = collections.Counter()
    for name in CORPORA:
        for line in (Path(data_dir) / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                counts.update(tokenizer(line, add_special_tokens=False).input_ids)
    first = sorted(set(tokenizer.all_special_ids) | set(tokenizer.convert_tokens_to_ids([f"<0x{b:02X}>" for b in range(256)])))
    first += tokenizer.convert_tokens_to_ids(["\n", "\n\n"])
    ranked = list(dict.fromkeys(first + [token for token, _ in counts.most_common()]))[:KEEP]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    ids = array("i", ranked)
    if sys.byteorder != "little":
        ids.byteswap()
    OUT.write_bytes(ids.tobytes())
    total = sum(counts.values())
    for size in (8192, 16384, 32768, len(ranked)):
        covered = sum(counts[token] for token in ranked[:size])
        print(f"top {size}: {covered / total:.3f} of {total} corpus tokens")
    print(f"wrote {len(ranked)} ids to {OUT}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
