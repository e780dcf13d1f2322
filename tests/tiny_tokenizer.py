"""A word-level tokenizer over exactly `VOCAB_SIZE` tokens, to save beside the tiny test models.

Ids 0-3 are <pad>, <s>, </s> and <unk>, matching PAD_ID, BOS_ID and EOS_ID of tiny_models; every other
id is one lowercase or capitalised word (or punctuation mark) used by the prompt tests.
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from tiny_models import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE

UNK_ID = 3
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]

WORDS = [
    ":", ".", ",", "\n", "translate", "to", "summarize", "Summary", "Article", "English", "German", "French",
    "Romanian", "Japanese", "the", "a", "cat", "dog", "sat", "on", "mat", "house", "is", "small", "big",
    "city", "council", "approved", "new", "budget", "Tuesday", "The", "Der", "Stadtrat", "hat", "am",
    "Dienstag", "den", "neuen", "Haushalt", "genehmigt", "user", "assistant", "Translate", "following",
    "text", "into", "Reply", "with", "translation", "only", "without", "notes", "or", "quotation", "marks",
    "Summarize", "article", "in", "two", "three", "sentences", "summary", "heading", "one", "of", "and",
    "red", "green", "blue", "river", "tree", "rain", "sun", "moon", "bird", "fish", "road", "train", "car",
    "book", "word", "day", "night", "water", "fire", "stone", "wind", "snow", "sea", "sky", "hill",
]

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ message['role'] }} : {{ message['content'] }} \n{% endfor %}"
    "{% if add_generation_prompt %}assistant :{% endif %}"
)

assert len(SPECIAL_TOKENS) + len(WORDS) == VOCAB_SIZE, len(SPECIAL_TOKENS) + len(WORDS)
assert SPECIAL_TOKENS.index("<pad>") == PAD_ID
assert SPECIAL_TOKENS.index("<s>") == BOS_ID
assert SPECIAL_TOKENS.index("</s>") == EOS_ID
assert SPECIAL_TOKENS.index("<unk>") == UNK_ID


def tiny_tokenizer(*, add_bos: bool = True, add_eos: bool = False, chat_template: str | None = None) -> PreTrainedTokenizerFast:
    """A fast tokenizer with `VOCAB_SIZE` tokens: <s> first for decoder-only models, </s> last for T5-like ones."""
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # Split on spaces and punctuation, but keep newlines as tokens: base prompts stop at "\n".
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex("[ \t]+"), behavior="removed"),
            pre_tokenizers.Split("\n", behavior="isolated"),
            pre_tokenizers.Punctuation(),
        ]
    )
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)

    template = ["$A"]
    if add_bos:
        template.insert(0, "<s>")
    if add_eos:
        template.append("</s>")
    single = " ".join(template)
    backend.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=[("<s>", BOS_ID), ("</s>", EOS_ID)]
    )

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer
