"""The real offline pair: Gemma 3 270M from the PyPI package, with its int8 self-draft (loads about 1 GB)."""

from __future__ import annotations

import pytest
import torch

from cmsd_cli.models import load_pair
from cmsd_cli.models.lean_draft import LeanGemma3Draft
from cmsd_cli.models.self_draft import FrequentTokenHead
from cmsd_cli.tasks import build_prompt

SENTENCE = "The museum reopened on Saturday after two years of repairs."


@pytest.mark.slow
@pytest.mark.ci
def test_offline_pair_loads_and_drafts():
    # The first run converts the GGUF file into the cmsd cache (about a minute on two cores).
    pair = load_pair(device="cpu")

    assert pair.preset == "offline"
    assert pair.family == "base"
    assert pair.draft_name == "self-int8-top32k"
    assert pair.is_encoder_decoder is False
    assert pair.vocab_size == 262144
    assert pair.context_length == 32768
    assert isinstance(pair.draft, LeanGemma3Draft)
    head = pair.draft.get_output_embeddings()
    assert isinstance(head, FrequentTokenHead)
    assert isinstance(head.frequent, torch.ao.nn.quantized.dynamic.Linear)

    ids = pair.tokenizer(SENTENCE, add_special_tokens=False).input_ids
    assert pair.tokenizer.decode(ids) == SENTENCE

    # A prompt whose first German word is clear: the target picks "Ich", and the int8 draft ranks it
    # among its top three (quantisation noise can swap it with " I", which is close behind).
    prompt = build_prompt("translate", pair, "I like apples.", src="en", tgt="de")
    head.set_prompt_tokens(prompt.input_ids[0].tolist())
    with torch.no_grad():
        target_token = pair.target(prompt.input_ids).logits[0, -1].argmax().item()
        draft_logits = pair.draft(input_ids=prompt.input_ids, cache=pair.draft.new_cache()).logits[0, -1]
    assert pair.tokenizer.decode([target_token]).strip() == "Ich"
    assert target_token in draft_logits.topk(3).indices.tolist()
