"""Translate the example sentences through the Python API, with the offline default model.

    python examples/translate_api.py

The first run converts the packaged Gemma 3 270M model once (a minute or two); later runs load it
from the cache.
"""

from pathlib import Path

from cmsd_cli import speculative_generate
from cmsd_cli.models import load_pair
from cmsd_cli.tasks import build_prompt

pair = load_pair()  # the "offline" preset: Gemma 3 270M with its own int8 copy as the draft
sentences = Path(__file__).with_name("news.en.txt").read_text(encoding="utf-8").splitlines()

for sentence in sentences:
    prompt = build_prompt("translate", pair, sentence, src="en", tgt="de")
    result = speculative_generate(
        pair.target,
        pair.draft,
        prompt.input_ids.to(pair.device),
        max_new_tokens=64,
        policy="cmsd",
        verify="greedy",  # lossless: the same tokens as the target model alone
        stop_strings=prompt.stop_strings,
        tokenizer=pair.tokenizer,
        eos_token_id=pair.eos_token_id,
        vocab_size=pair.vocab_size,
    )
    stats = result.stats
    print(result.text.strip())
    print(
        f"  {stats['new_tokens']} tokens, {stats['target_calls']} target calls, "
        f"{stats['accepted']}/{stats['drafted']} draft tokens accepted"
    )
