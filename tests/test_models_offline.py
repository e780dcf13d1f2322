"""The real offline pair: Gemma 3 270M from the PyPI package, with its int8 self-draft (loads about 1 GB)."""

from __future__ import annotations

import pytest
import torch

from cmsd_cli.models import load_pair
from cmsd_cli.tasks import build_prompt

SENTENCE = "The museum reopened on Saturday after two years of repairs."


@pytest.mark.slow
@pytest.mark.ci
def test_offline_pair_loads_and_drafts():
    # The first run converts the GGUF file into the cmsd cache (about a minute on two cores).
    pair = load_pair(device="cpu")

    assert pair.preset == "offline"
    assert pair.family == "base"
    assert pair.draft_name == "self-int8"
    assert pair.is_encoder_decoder is False
    assert pair.vocab_size == 262144
    assert pair.context_length == 32768
    assert isinstance(pair.draft.lm_head, torch.ao.nn.quantized.dynamic.Linear)

    ids = pair.tokenizer(SENTENCE, add_special_tokens=False).input_ids
    assert pair.tokenizer.decode(ids) == SENTENCE

    # A prompt whose first German word is clear: both models pick "Ich" with a margin of 1 logit or more.
    # On closer calls the two can differ; for SENTENCE the target picks "Die" and the draft "Der".
    prompt = build_prompt("translate", pair, "I like apples.", src="en", tgt="de")
    with torch.no_grad():
        target_token = pair.target(prompt.input_ids).logits[0, -1].argmax().item()
        draft_token = pair.draft(prompt.input_ids).logits[0, -1].argmax().item()
    assert pair.tokenizer.decode([target_token]).strip() == "Ich"
    assert draft_token == target_token
