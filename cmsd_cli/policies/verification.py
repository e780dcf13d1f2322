"""Verification rules: which drafted tokens the target accepts, and the token it adds after them.

Every rule gets the target's logits for the k drafted positions plus one (position i scores draft
token i; position k scores the bonus token when all k are accepted) and returns the number of
accepted draft tokens and the next token (the target's correction or bonus token), so every round
yields at least one token.

- `greedy`: accept while the draft token is the target's argmax. Lossless.
- `sample`: speculative sampling. Accept token y with probability min(1, p(y) / q(y)); on rejection
  sample from norm(max(0, p - q)); if every draft token is accepted, sample the bonus token from p.
  Lossless in distribution. Needs draft tokens sampled from q.
- `tolerant`: accept y when its rank under p is at most `beta` and log p(top) - log p(y) <= `tau`.
- `cmsd`: `tolerant` with beta_t = 1 + round((beta - 1) * c_t) and tau_t = tau * c_t, where c_t is the
  draft's confidence in that token. At c_t = 0 it is exactly `greedy`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch


@dataclass
class Verdict:
    accepted: int
    next_token: int
    relaxed_positions: list[int] = field(default_factory=list)


@dataclass
class Verifier:
    name = "base"
    lossless = False
    samples_draft = False  # True when draft tokens must be sampled from q instead of taken as argmax

    def verify(
        self,
        draft_tokens: list[int],
        target_logits: torch.Tensor,
        *,
        target_probs: torch.Tensor | None = None,
        draft_probs: torch.Tensor | None = None,
        confidences: list[float] | None = None,
        generator: torch.Generator | None = None,
    ) -> Verdict:
        raise NotImplementedError

    def params(self) -> dict:
        return {"verify": self.name, **asdict(self)}


@dataclass
class GreedyVerifier(Verifier):
    name = "greedy"
    lossless = True

    def verify(self, draft_tokens, target_logits, **_) -> Verdict:
        # One host sync for the whole block.
        argmax = target_logits.argmax(dim=-1).tolist()
        accepted = 0
        while accepted < len(draft_tokens) and draft_tokens[accepted] == argmax[accepted]:
            accepted += 1
        return Verdict(accepted=accepted, next_token=argmax[accepted])


def _sample(probabilities: torch.Tensor, generator: torch.Generator | None) -> int:
    return int(torch.multinomial(probabilities, num_samples=1, generator=generator))


@dataclass
class SampleVerifier(Verifier):
    name = "sample"
    lossless = True
    samples_draft = True

    def verify(self, draft_tokens, target_logits, *, target_probs=None, draft_probs=None, generator=None, **_) -> Verdict:
        if target_probs is None:
            raise ValueError("sample verification needs the target probabilities")
        if draft_tokens and draft_probs is None:
            raise ValueError("sample verification needs the draft probabilities of every draft token")
        if draft_tokens:
            draft_probs = draft_probs.to(target_probs.device)

        for position, token in enumerate(draft_tokens):
            p = target_probs[position]
            q = draft_probs[position]
            # Accept with probability min(1, p/q), written as u * q < p to avoid dividing by q.
            u = float(torch.rand((), generator=generator, device=p.device))
            if u * float(q[token]) < float(p[token]):
                continue

            residual = torch.clamp(p - q, min=0.0)
            total = float(residual.sum())
            # When p == q within rounding there is no residual mass; p is then the right distribution.
            replacement = residual / total if total > 0 else p
            return Verdict(accepted=position, next_token=_sample(replacement, generator))

        bonus = _sample(target_probs[len(draft_tokens)], generator)
        return Verdict(accepted=len(draft_tokens), next_token=bonus)


def _relaxed_accept(
    draft_tokens: list[int],
    target_logits: torch.Tensor,
    betas: list[int],
    taus: list[float],
) -> Verdict:
    k = len(draft_tokens)
    argmax = target_logits.argmax(dim=-1)
    if k == 0:
        return Verdict(accepted=0, next_token=int(argmax[0]))

    # Rank (1 = best) and log-probability gap of each draft token under the target. The gap needs no
    # softmax: log p(top) - log p(y) = logit(top) - logit(y).
    drafted = torch.tensor(draft_tokens, device=target_logits.device)
    scored = target_logits[:k]
    token_logits = scored.gather(1, drafted[:, None])
    ranks = (scored > token_logits).sum(dim=-1) + 1
    gaps = scored.max(dim=-1).values - token_logits[:, 0]

    ranks_list = ranks.tolist()
    gaps_list = gaps.tolist()
    argmax_list = argmax.tolist()

    accepted = 0
    relaxed: list[int] = []
    while accepted < k:
        token = draft_tokens[accepted]
        if token == argmax_list[accepted]:
            accepted += 1
            continue
        # beta <= 1 allows only the argmax itself, so ties never let a non-argmax token through.
        if betas[accepted] > 1 and ranks_list[accepted] <= betas[accepted] and gaps_list[accepted] <= taus[accepted]:
            relaxed.append(accepted)
            accepted += 1
            continue
        break
    return Verdict(accepted=accepted, next_token=argmax_list[accepted], relaxed_positions=relaxed)


@dataclass
class TolerantVerifier(Verifier):
    name = "tolerant"
    beta: int = 3
    tau: float = 2.0

    def __post_init__(self) -> None:
        if self.beta < 1:
            raise ValueError(f"beta must be at least 1, got {self.beta}")
        if self.tau < 0:
            raise ValueError(f"tau must be non-negative, got {self.tau}")

    def verify(self, draft_tokens, target_logits, **_) -> Verdict:
        k = len(draft_tokens)
        return _relaxed_accept(draft_tokens, target_logits, [self.beta] * k, [self.tau] * k)


@dataclass
class CmsdVerifier(TolerantVerifier):
    """Tolerant verification whose strictness follows the draft confidence of each token."""

    name = "cmsd"

    def thresholds(self, confidence: float) -> tuple[int, float]:
        beta_t = 1 + round((self.beta - 1) * confidence)
        tau_t = self.tau * confidence
        return beta_t, tau_t

    def verify(self, draft_tokens, target_logits, *, confidences=None, **_) -> Verdict:
        if confidences is None or len(confidences) != len(draft_tokens):
            raise ValueError("cmsd verification needs one confidence per draft token")
        pairs = [self.thresholds(c) for c in confidences]
        return _relaxed_accept(draft_tokens, target_logits, [b for b, _ in pairs], [t for _, t in pairs])


VERIFIERS: dict[str, type[Verifier]] = {
    GreedyVerifier.name: GreedyVerifier,
    SampleVerifier.name: SampleVerifier,
    TolerantVerifier.name: TolerantVerifier,
    CmsdVerifier.name: CmsdVerifier,
}
