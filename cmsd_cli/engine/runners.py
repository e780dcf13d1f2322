"""One small interface over decoder-only and encoder-decoder models, so the decoding loop reads the same for both.

A runner feeds tokens to one model and keeps its KV cache in step with the committed token sequence.
The engine owns that sequence. Each runner remembers which tokens its cache holds, and after every
verification `sync` cuts the cache back to the longest prefix that still matches.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache, EncoderDecoderCache


def model_device(model: torch.nn.Module) -> torch.device:
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def _truncate_layers(cache: DynamicCache, length: int) -> None:
    # Slicing keeps a view of the first `length` positions, so a rollback copies nothing.
    # Every layer is a full-attention DynamicLayer (see `_new_self_attention_cache`), so no layer
    # has dropped positions that a rollback would need.
    for layer in cache.layers:
        if getattr(layer, "keys", None) is None or layer.keys.numel() == 0:
            continue
        layer.keys = layer.keys[..., :length, :]
        layer.values = layer.values[..., :length, :]


def _new_self_attention_cache() -> DynamicCache:
    # A DynamicCache built without a config gives every layer a full-length cache, including the
    # sliding-window layers of models such as Gemma 3. The model still applies its sliding-window
    # mask, so outputs are unchanged, and rollback stays exact past the window length, which a
    # window-sized cache cannot do once it has dropped old positions.
    return DynamicCache()


class ModelRunner:
    """Feeds committed and drafted tokens to one model and rolls its KV cache back on rejection."""

    def __init__(self, model: torch.nn.Module, vocab_size: int) -> None:
        self.model = model
        self.device = model_device(model)
        self.vocab_size = vocab_size
        self.cached_tokens: list[int] = []
        self.forward_calls = 0
        # A head that can return logits over its own tokens only (the self-int8-top drafts' FrequentTokenHead).
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        self.compact_head = head if hasattr(head, "set_prompt_tokens") else None

    @property
    def compact_ids(self) -> torch.Tensor | None:
        """Vocabulary ids of the columns of compact logits, or None when the model cannot return them."""
        return self.compact_head.token_ids if self.compact_head is not None else None

    def start(self, sequence: list[int]) -> None:
        """Prefill the cache with all committed tokens but the last, which the next `feed` sends."""
        raise NotImplementedError

    def sync(self, sequence: list[int]) -> None:
        """Cut the cache back to the longest prefix it shares with `sequence`, short of its last token.

        The last committed token always stays out of the cache, because the next forward pass must
        feed it to get the logits that follow it.
        """
        keep = 0
        limit = min(len(self.cached_tokens), len(sequence) - 1)
        while keep < limit and self.cached_tokens[keep] == sequence[keep]:
            keep += 1
        if keep < len(self.cached_tokens):
            self._truncate(keep)
            del self.cached_tokens[keep:]

    def pending(self, sequence: list[int]) -> list[int]:
        """Committed tokens that the cache does not hold yet (always at least the last one)."""
        return sequence[len(self.cached_tokens) :]

    def feed(self, tokens: list[int], logits_to_keep: int, compact: bool = False) -> torch.Tensor:
        """Run the model on `tokens`, append them to the cache, and return the last `logits_to_keep` logits.

        The result has shape [logits_to_keep, vocab_size], in float32. With `compact` and a model whose
        head supports it (`compact_ids` is not None), it is [logits_to_keep, len(compact_ids)] instead.
        """
        ids = torch.tensor([tokens], dtype=torch.long, device=self.device)
        compact = compact and self.compact_head is not None
        if compact:
            self.compact_head.compact = True
        try:
            logits = self._forward(ids, logits_to_keep)
        finally:
            if compact:
                self.compact_head.compact = False
        self.forward_calls += 1
        self.cached_tokens.extend(tokens)
        if compact:
            return logits[0, -logits_to_keep:].float()
        return logits[0, -logits_to_keep:, : self.vocab_size].float()

    def _forward(self, ids: torch.Tensor, logits_to_keep: int) -> torch.Tensor:
        raise NotImplementedError

    def _truncate(self, length: int) -> None:
        raise NotImplementedError


class CausalRunner(ModelRunner):
    """Decoder-only models (Llama-like, Gemma 3): the prompt is the start of the sequence."""

    def __init__(self, model: torch.nn.Module, vocab_size: int) -> None:
        super().__init__(model, vocab_size)
        # A model with its own cache type (the lean self-draft) provides it; it rolls back with `truncate`.
        self.cache = model.new_cache() if hasattr(model, "new_cache") else _new_self_attention_cache()

    def start(self, sequence: list[int]) -> None:
        if len(sequence) > 1:
            self.feed(sequence[:-1], logits_to_keep=1)
            self.forward_calls -= 1  # prefill is counted separately from decoding calls

    def _forward(self, ids: torch.Tensor, logits_to_keep: int) -> torch.Tensor:
        output = self.model(input_ids=ids, cache=self.cache, use_cache=True, logits_to_keep=logits_to_keep)
        return output.logits

    def _truncate(self, length: int) -> None:
        if hasattr(self.cache, "truncate"):
            self.cache.truncate(length)
        else:
            _truncate_layers(self.cache, length)


class Seq2SeqRunner(ModelRunner):
    """Encoder-decoder models (T5, BART, Marian): the encoder runs once, the sequence is the decoder's."""

    def __init__(
        self,
        model: torch.nn.Module,
        vocab_size: int,
        encoder_input_ids: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None,
    ) -> None:
        super().__init__(model, vocab_size)
        self.cache = EncoderDecoderCache(_new_self_attention_cache(), DynamicCache())
        self.encoder_attention_mask = (
            encoder_attention_mask.to(self.device) if encoder_attention_mask is not None else None
        )
        encoder = model.get_encoder()
        with torch.inference_mode():
            self.encoder_outputs = encoder(
                input_ids=encoder_input_ids.to(self.device),
                attention_mask=self.encoder_attention_mask,
                return_dict=True,
            )

    def start(self, sequence: list[int]) -> None:
        if len(sequence) > 1:
            self.feed(sequence[:-1], logits_to_keep=1)
            self.forward_calls -= 1

    def _forward(self, ids: torch.Tensor, logits_to_keep: int) -> torch.Tensor:
        output = self.model(
            encoder_outputs=self.encoder_outputs,
            attention_mask=self.encoder_attention_mask,
            decoder_input_ids=ids,
            cache=self.cache,
            use_cache=True,
        )
        return output.logits

    def _truncate(self, length: int) -> None:
        _truncate_layers(self.cache.self_attention_cache, length)


def make_runner(
    model: torch.nn.Module,
    vocab_size: int,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
) -> ModelRunner:
    if model.config.is_encoder_decoder:
        runner = Seq2SeqRunner(model, vocab_size, input_ids, attention_mask)
    else:
        runner = CausalRunner(model, vocab_size)
    if runner.compact_head is not None:
        # Translations and summaries copy names and numbers from their input, so its tokens are draftable.
        runner.compact_head.set_prompt_tokens(input_ids.reshape(-1).tolist())
    return runner


def output_vocab_size(model: torch.nn.Module) -> int:
    """Count the logits the model produces per position (its output vocabulary size)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and hasattr(head, "out_features"):
        return int(head.out_features)
    if head is not None and hasattr(head, "weight"):
        return int(head.weight.shape[0])
    return int(model.config.get_text_config().vocab_size)
