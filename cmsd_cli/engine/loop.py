"""The speculative decoding loop: draft, verify in one target pass, roll back, repeat."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import LogitsProcessorList

from cmsd_cli.engine.processors import build_logits_processors, build_warpers, process_block
from cmsd_cli.engine.records import (
    DRAFT_STOP_BUDGET,
    DRAFT_STOP_EOS,
    DRAFT_STOP_LOW_CONFIDENCE,
    DRAFT_STOP_NONE,
    DRAFT_STOP_STOP_STRING,
    DRAFT_STOP_TOKEN_BUDGET,
    GenerationResult,
    IterationRecord,
    summarize_trace,
)
from cmsd_cli.engine.runners import ModelRunner, make_runner, output_vocab_size
from cmsd_cli.policies import DraftPolicy, StaticPolicy, Verifier, make_policy, make_verifier, step_confidence


@dataclass
class _Draft:
    tokens: list[int]
    probs: torch.Tensor | None  # [k, V] draft distributions, kept only for sample verification
    entropy: list[float]
    margin: list[float]
    confidence: list[float]
    stop: str
    budget: int
    seconds: float


def _normalise_eos(eos_token_id, target) -> list[int]:
    if eos_token_id is None:
        config_eos = getattr(getattr(target, "generation_config", None), "eos_token_id", None)
        if config_eos is None:
            config_eos = getattr(target.config, "eos_token_id", None)
        eos_token_id = config_eos
    if eos_token_id is None:
        return []
    if isinstance(eos_token_id, int):
        return [eos_token_id]
    return [int(token) for token in eos_token_id]


def _prompt_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    if input_ids.dim() == 1:
        input_ids = input_ids[None, :]
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(
            f"input_ids must have shape [1, n] (one sequence), got {tuple(input_ids.shape)}; "
            "call speculative_generate once per input"
        )
    if attention_mask is not None:
        # Batch size 1: padding carries no information, so drop it instead of masking it.
        input_ids = input_ids[:, attention_mask.reshape(-1).bool()]
    if input_ids.shape[1] == 0:
        raise ValueError("input_ids is empty; give at least one prompt token")
    return input_ids


def _is_cuda(*devices: torch.device) -> bool:
    return any(device.type == "cuda" for device in devices)


class _Clock:
    """Wall-clock seconds, synchronising CUDA first so queued kernels are counted where they belong."""

    def __init__(self, sync: bool) -> None:
        self.sync = sync

    def now(self) -> float:
        if self.sync:
            torch.cuda.synchronize()
        return time.perf_counter()


def _distribution(
    logits: torch.Tensor, warpers: LogitsProcessorList, prefix: list[int], sampling: bool
) -> torch.Tensor:
    """Compute the draft's next-token distribution: warped when sampling, a plain softmax otherwise."""
    if sampling and warpers:
        ids = torch.tensor([prefix], dtype=torch.long, device=logits.device)
        logits = warpers(ids, logits[None, :].clone())[0]
    return torch.softmax(logits, dim=-1)


def _draft_tokens(
    runner: ModelRunner,
    sequence: list[int],
    policy: DraftPolicy,
    verifier: Verifier,
    processors: LogitsProcessorList,
    warpers: LogitsProcessorList,
    eos_ids: set[int],
    ends_output: Callable[[int], bool],
    room: int,
    generator: torch.Generator | None,
    clock: _Clock,
) -> _Draft:
    """Propose up to the policy's budget of tokens; `room` caps it so the bonus token still fits."""
    start = clock.now()
    budget = policy.budget()
    limit = min(budget, room)
    sampling = verifier.samples_draft

    tokens: list[int] = []
    probs: list[torch.Tensor] = []
    entropy: list[float] = []
    margin: list[float] = []
    confidence: list[float] = []
    stop = DRAFT_STOP_BUDGET if limit == budget else DRAFT_STOP_TOKEN_BUDGET

    # A draft head over part of the vocabulary can skip filling in the rest with -inf when only the
    # argmax and the confidence are needed. The entropy and margin come out the same either way.
    compact_ids = runner.compact_ids if not sampling and not processors else None
    compact = compact_ids is not None

    if limit > 0:
        logits = runner.feed(runner.pending(sequence), logits_to_keep=1, compact=compact)[0]
    while len(tokens) < limit:
        prefix = sequence + tokens
        logits = process_block(processors, prefix, [], logits[None, :])[0] if processors else logits
        q = _distribution(logits, warpers, prefix, sampling)
        if sampling:
            token = int(torch.multinomial(q, 1, generator=generator))
        else:
            index = int(q.argmax())
            token = int(compact_ids[index]) if compact else index
        step = step_confidence(q, policy.confidence_weight)

        tokens.append(token)
        entropy.append(step.entropy)
        margin.append(step.margin)
        confidence.append(step.confidence)
        if sampling:
            probs.append(q)

        if token in eos_ids:
            stop = DRAFT_STOP_EOS
            break
        # Tokens after a stop string would be cut from the output anyway, so drafting them is wasted.
        if ends_output(token):
            stop = DRAFT_STOP_STOP_STRING
            break
        if not policy.keep_drafting(step):
            stop = DRAFT_STOP_LOW_CONFIDENCE
            break
        if len(tokens) < limit:
            logits = runner.feed([token], logits_to_keep=1, compact=compact)[0]

    return _Draft(
        tokens=tokens,
        probs=torch.stack(probs) if probs else None,
        entropy=entropy,
        margin=margin,
        confidence=confidence,
        stop=stop if limit > 0 else DRAFT_STOP_TOKEN_BUDGET,
        budget=budget,
        seconds=clock.now() - start,
    )


class _StopStringTokens:
    """Check whether one token's own text contains a stop string, caching the result per token id.

    Stop strings that span several tokens are not detected here; the output is still cut correctly
    by `cut_at_stop_string`, and only the early end of drafting is missed.
    """

    def __init__(self, tokenizer, stop_strings: Sequence[str] | None) -> None:
        self.tokenizer = tokenizer
        self.stop_strings = [stop for stop in (stop_strings or []) if stop]
        self.known: dict[int, bool] = {}

    def __call__(self, token: int) -> bool:
        if not self.stop_strings:
            return False
        if token not in self.known:
            text = self.tokenizer.decode([token], skip_special_tokens=True)
            self.known[token] = any(stop in text for stop in self.stop_strings)
        return self.known[token]


def _first_stop_string(text: str, stop_strings: Sequence[str]) -> int | None:
    positions = [text.find(stop) for stop in stop_strings if stop and stop in text]
    return min(positions) if positions else None


def cut_at_stop_string(tokens: list[int], tokenizer, stop_strings: Sequence[str]) -> tuple[list[int], str | None]:
    """Shorten `tokens` to the shortest prefix whose text contains a stop string, and cut the text there.

    Returns the tokens unchanged and None when no stop string occurs.
    """
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    cut = _first_stop_string(text, stop_strings)
    if cut is None:
        return tokens, None
    for length in range(1, len(tokens) + 1):
        prefix_text = tokenizer.decode(tokens[:length], skip_special_tokens=True)
        prefix_cut = _first_stop_string(prefix_text, stop_strings)
        if prefix_cut is not None:
            return tokens[:length], prefix_text[:prefix_cut]
    return tokens, text[:cut]


def _check_vocabularies(target_vocab: int, draft_vocab: int, vocab_size: int | None) -> int:
    if vocab_size is not None:
        if vocab_size > min(target_vocab, draft_vocab):
            raise ValueError(
                f"vocab_size={vocab_size} is larger than the target ({target_vocab}) or draft ({draft_vocab}) output size"
            )
        return vocab_size
    if target_vocab != draft_vocab:
        raise ValueError(
            f"the draft model's vocabulary ({draft_vocab} tokens) differs from the target's ({target_vocab} tokens); "
            "speculative decoding needs a draft that shares the target's tokenizer"
        )
    return target_vocab


def speculative_generate(
    target: torch.nn.Module,
    draft: torch.nn.Module | None,
    input_ids: torch.Tensor,
    *,
    max_new_tokens: int,
    verify: str | Verifier = "greedy",
    draft_length: int = 4,
    policy: str | DraftPolicy = "static",
    policy_params: dict | None = None,
    verify_params: dict | None = None,
    attention_mask: torch.Tensor | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop_strings: Sequence[str] | None = None,
    tokenizer=None,
    on_iteration: Callable[[IterationRecord], None] | None = None,
    repetition_penalty: float | None = None,
    no_repeat_ngram_size: int | None = None,
    min_new_tokens: int | None = None,
    logits_processor: LogitsProcessorList | None = None,
    vocab_size: int | None = None,
) -> GenerationResult:
    """Generate up to `max_new_tokens` tokens with `draft` proposing and `target` verifying.

    `draft=None` decodes with the target alone through the same loop (the baseline). With
    `verify="greedy"` the output token ids equal the target's own greedy decoding; with
    `verify="sample"` they follow the target's sampling distribution (temperature, top_k and top_p
    applied to both models alike). `policy` sets the draft length per round ("static" uses
    `draft_length`). Encoder-decoder models take the encoder input as `input_ids` and decode from
    their decoder start token. Stop strings need `tokenizer`; nothing after a stop string or after
    the first end-of-sequence token is returned. `vocab_size` restricts both models to a shared
    leading part of their vocabularies when only padding rows differ.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if stop_strings and tokenizer is None:
        raise ValueError("stop_strings need a tokenizer to decode the output")
    if draft is not None and draft.config.is_encoder_decoder != target.config.is_encoder_decoder:
        raise ValueError("the draft and target must both be decoder-only or both be encoder-decoder models")

    prompt = _prompt_tokens(input_ids, attention_mask)

    # Policy and verification rule.
    verifier = verify if isinstance(verify, Verifier) else make_verifier(verify, verify_params)
    if isinstance(policy, DraftPolicy):
        draft_policy = policy
    elif policy == "static" and not policy_params:
        draft_policy = StaticPolicy(draft_length=draft_length)
    else:
        draft_policy = make_policy(policy, policy_params)
    draft_policy.reset()
    sampling = verifier.name == "sample"

    # Vocabulary and runners.
    target_vocab = output_vocab_size(target)
    shared_vocab = target_vocab
    if draft is not None:
        shared_vocab = _check_vocabularies(target_vocab, output_vocab_size(draft), vocab_size)
    elif vocab_size is not None:
        shared_vocab = vocab_size

    with torch.inference_mode():
        target_runner = make_runner(target, shared_vocab, prompt, None)
        draft_runner = make_runner(draft, shared_vocab, prompt, None) if draft is not None else None

        if target.config.is_encoder_decoder:
            start_token = target.generation_config.decoder_start_token_id
            if start_token is None:
                start_token = target.config.decoder_start_token_id
            if start_token is None:
                raise ValueError("the encoder-decoder target has no decoder_start_token_id in its config")
            sequence = [int(start_token)]
        else:
            sequence = prompt[0].tolist()
        prompt_length = len(sequence)

        eos_ids = _normalise_eos(eos_token_id, target)
        eos_set = set(eos_ids)
        ends_output = _StopStringTokens(tokenizer, stop_strings)
        processors = build_logits_processors(
            target,
            prompt_length=prompt_length,
            max_length=prompt_length + max_new_tokens,
            eos_token_ids=eos_ids,
            overrides={
                "repetition_penalty": repetition_penalty,
                "no_repeat_ngram_size": no_repeat_ngram_size,
                "min_new_tokens": min_new_tokens,
            },
            extra=logits_processor,
        )
        warpers = build_warpers(temperature, top_k, top_p) if sampling else LogitsProcessorList()

        generator = None
        if seed is not None:
            generator = torch.Generator(device=target_runner.device).manual_seed(seed)
        draft_generator = generator
        if draft_runner is not None and seed is not None and draft_runner.device != target_runner.device:
            draft_generator = torch.Generator(device=draft_runner.device).manual_seed(seed + 1)

        devices = [target_runner.device] + ([draft_runner.device] if draft_runner else [])
        clock = _Clock(sync=_is_cuda(*devices))
        run_start = clock.now()

        target_runner.start(sequence)
        if draft_runner is not None:
            draft_runner.start(sequence)

        trace: list[IterationRecord] = []
        new_tokens: list[int] = []
        finish_reason = "length"
        text: str | None = None

        while len(new_tokens) < max_new_tokens:
            remaining = max_new_tokens - len(new_tokens)

            # Draft. The last new token must come from the target, so at most remaining - 1 are drafted.
            if draft_runner is not None:
                draft_runner.sync(sequence)
                proposal = _draft_tokens(
                    draft_runner, sequence, draft_policy, verifier, processors, warpers,
                    eos_set, ends_output, remaining - 1, draft_generator, clock,
                )
            else:
                proposal = _Draft([], None, [], [], [], DRAFT_STOP_NONE, budget=0, seconds=0.0)

            # Verify every draft token in one target pass.
            verify_start = clock.now()
            target_logits = target_runner.feed(
                target_runner.pending(sequence) + proposal.tokens, logits_to_keep=len(proposal.tokens) + 1
            )
            target_logits = process_block(processors, sequence, proposal.tokens, target_logits)
            target_probs = None
            if sampling:
                target_probs = torch.softmax(process_block(warpers, sequence, proposal.tokens, target_logits), dim=-1)
            verdict = verifier.verify(
                proposal.tokens,
                target_logits,
                target_probs=target_probs,
                draft_probs=proposal.probs,
                confidences=proposal.confidence,
                generator=generator,
            )
            verify_seconds = clock.now() - verify_start

            # Commit the accepted prefix and the target's token, stopping at the first EOS.
            emitted = proposal.tokens[: verdict.accepted] + [verdict.next_token]
            emitted = emitted[:remaining]
            for index, token in enumerate(emitted):
                if token in eos_set:
                    emitted = emitted[: index + 1]
                    finish_reason = "eos"
                    break
            sequence.extend(emitted)
            new_tokens.extend(emitted)

            # Roll the target's cache back to the committed prefix; the draft's is synced before it drafts.
            target_runner.sync(sequence)
            draft_policy.observe(len(proposal.tokens), verdict.accepted, proposal.confidence)

            record = IterationRecord(
                budget=proposal.budget,
                draft_length=len(proposal.tokens),
                draft_tokens=proposal.tokens,
                entropy=proposal.entropy,
                margin=proposal.margin,
                confidence=proposal.confidence,
                accepted=verdict.accepted,
                emitted=list(emitted),
                rollback=verdict.accepted < len(proposal.tokens),
                draft_stop=proposal.stop,
                relaxed_positions=verdict.relaxed_positions,
                draft_seconds=proposal.seconds,
                verify_seconds=verify_seconds,
            )
            trace.append(record)

            if stop_strings:
                cut_tokens, cut_text = cut_at_stop_string(new_tokens, tokenizer, stop_strings)
                if cut_text is not None:
                    dropped = len(new_tokens) - len(cut_tokens)
                    if dropped:
                        record.emitted = record.emitted[: len(record.emitted) - dropped]
                    new_tokens = cut_tokens
                    text = cut_text
                    finish_reason = "stop_string"
            if on_iteration is not None:
                on_iteration(record)
            if finish_reason != "length":
                break

        seconds = clock.now() - run_start

    if text is None and tokenizer is not None:
        text = tokenizer.decode(new_tokens, skip_special_tokens=True)

    stats = summarize_trace(trace, len(new_tokens), seconds)
    stats["draft_steps"] = draft_runner.forward_calls if draft_runner is not None else 0
    stats["target_calls"] = target_runner.forward_calls
    stats["policy"] = draft_policy.params() if draft_runner is not None else {"policy": "none"}
    stats["verify"] = verifier.params()
    return GenerationResult(tokens=new_tokens, text=text, finish_reason=finish_reason, stats=stats, trace=trace)
