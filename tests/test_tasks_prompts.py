"""Prompts per model family, language codes, and fitting a prompt into a token budget."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from cmsd_cli.tasks import (
    LANGUAGE_CODES,
    PromptTooLongError,
    UnknownLanguageError,
    UnsupportedTaskError,
    build_prompt,
    fit_prompt,
    language_name,
)
from cmsd_cli.tasks.languages import example_sentence
from tiny_models import BOS_ID, EOS_ID
from tiny_tokenizer import CHAT_TEMPLATE, tiny_tokenizer

EXAMPLE_EN = "The children played in the garden until it got dark."
EXAMPLE_DE = "Die Kinder spielten im Garten, bis es dunkel wurde."
REQUIRED_CODES = ("en", "de", "fr", "ro", "es", "it", "pt", "nl", "cs", "ru", "zh", "ja")


def fake_pair(family: str, tokenizer=None, target_name: str = "tiny"):
    return SimpleNamespace(family=family, tokenizer=tokenizer or tiny_tokenizer(), target_name=target_name)


def t5_pair(target_name: str = "google-t5/t5-small"):
    return fake_pair("t5", tiny_tokenizer(add_bos=False, add_eos=True), target_name)


def ids_of(tokenizer, text: str, **kwargs) -> list[int]:
    return tokenizer(text, **kwargs).input_ids


# --- t5 ---


def test_t5_translation_prefix():
    pair = t5_pair()

    prompt = build_prompt("translate", pair, "the cat sat", src="en", tgt="de")

    assert prompt.text == "translate English to German: the cat sat"
    assert prompt.input_ids.tolist() == [ids_of(pair.tokenizer, prompt.text)]
    assert prompt.input_ids[0, -1].item() == EOS_ID
    assert prompt.stop_strings == []
    assert prompt.truncated is False
    assert prompt.source == "the cat sat"


def test_t5_summary_prefix():
    prompt = build_prompt("summarize", t5_pair(), "the cat sat on the mat")
    assert prompt.text == "summarize: the cat sat on the mat"
    assert prompt.stop_strings == []


def test_t5_untrained_pair_warns_except_flan(caplog):
    with caplog.at_level(logging.WARNING, logger="cmsd_cli.tasks.prompts"):
        build_prompt("translate", t5_pair(), "the cat", src="en", tgt="ja")
    assert "trained to translate English to German, French and Romanian only" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cmsd_cli.tasks.prompts"):
        build_prompt("translate", t5_pair("google/flan-t5-small"), "the cat", src="en", tgt="ja")
        build_prompt("translate", t5_pair(), "the cat", src="en", tgt="ro")
    assert caplog.text == ""


# --- bart ---


def test_bart_summary_is_the_article():
    pair = fake_pair("bart", tiny_tokenizer(add_bos=True, add_eos=True))

    prompt = build_prompt("summarize", pair, "the cat sat on the mat")

    assert prompt.text == "the cat sat on the mat"
    assert prompt.input_ids.tolist() == [ids_of(pair.tokenizer, "the cat sat on the mat")]
    assert prompt.stop_strings == []


def test_bart_translation_unsupported():
    with pytest.raises(UnsupportedTaskError, match="summarization models"):
        build_prompt("translate", fake_pair("bart"), "the cat", src="en", tgt="de")


# --- chat ---


def chat_pair():
    return fake_pair("chat", tiny_tokenizer(chat_template=CHAT_TEMPLATE), "tiny-Instruct")


def test_chat_translation_uses_template():
    pair = chat_pair()

    prompt = build_prompt("translate", pair, "the cat sat", src="en", tgt="de")

    instruction = (
        "Translate the following English text into German. "
        "Reply with the translation only, without notes or quotation marks."
    )
    expected = pair.tokenizer.apply_chat_template(
        [{"role": "user", "content": f"{instruction}\n\nthe cat sat"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.text == expected
    assert prompt.text.endswith("assistant :")
    assert prompt.stop_strings == []
    ids = prompt.input_ids[0].tolist()
    assert ids.count(BOS_ID) == 1  # the template's BOS, not a second one from the tokenizer
    assert ids[0] == BOS_ID


def test_chat_summary_instruction():
    prompt = build_prompt("summarize", chat_pair(), "the cat sat on the mat")
    assert "Summarize the following article in two or three sentences." in prompt.text
    assert "the cat sat on the mat" in prompt.text


def test_chat_without_template_unsupported():
    with pytest.raises(UnsupportedTaskError, match="no chat template"):
        build_prompt("summarize", fake_pair("chat"), "the cat")


# --- base ---


def test_base_translation_one_shot():
    pair = fake_pair("base")

    prompt = build_prompt("translate", pair, "the cat sat", src="en", tgt="de")

    assert prompt.text == (
        f"Translate English to German.\n\nEnglish: {EXAMPLE_EN}\nGerman: {EXAMPLE_DE}\n\nEnglish: the cat sat\nGerman:"
    )
    assert prompt.stop_strings == ["\n"]
    assert prompt.input_ids[0, 0].item() == BOS_ID
    assert prompt.input_ids.tolist() == [ids_of(pair.tokenizer, prompt.text)]


def test_base_translation_reverse_direction():
    prompt = build_prompt("translate", fake_pair("base"), "der Garten", src="de", tgt="en")
    assert prompt.text == (
        f"Translate German to English.\n\nGerman: {EXAMPLE_DE}\nEnglish: {EXAMPLE_EN}\n\nGerman: der Garten\nEnglish:"
    )


def test_base_source_kept_on_one_line():
    prompt = build_prompt("translate", fake_pair("base"), "  the cat\nsat \t on the mat ", src="en", tgt="fr")
    assert prompt.text.endswith("\nEnglish: the cat sat on the mat\nFrench:")


def test_base_summary_cue():
    prompt = build_prompt("summarize", fake_pair("base"), "the cat\n\nsat on the mat")

    assert prompt.text == "Article: the cat sat on the mat\nSummary:"
    assert prompt.stop_strings == ["\n"]


# --- arguments and languages ---


def test_unknown_task_rejected():
    with pytest.raises(ValueError, match="Unknown task 'paraphrase'"):
        build_prompt("paraphrase", fake_pair("base"), "the cat")


def test_translation_needs_target_language():
    with pytest.raises(ValueError, match="needs a target language"):
        build_prompt("translate", fake_pair("base"), "the cat", src="en")


def test_source_language_defaults_to_english():
    prompt = build_prompt("translate", fake_pair("base"), "the cat", tgt="de")
    assert prompt.text.startswith("Translate English to German.")


def test_unknown_language_code_lists_known():
    with pytest.raises(UnknownLanguageError) as caught:
        build_prompt("translate", fake_pair("base"), "the cat", src="en", tgt="xx")

    message = str(caught.value)
    assert "'xx'" in message
    for code in REQUIRED_CODES:
        assert f"{code} ({language_name(code)})" in message


def test_language_names():
    assert language_name("de") == "German"
    assert language_name("EN") == "English"
    assert language_name("en-US") == "English"
    assert language_name("pt_BR") == "Portuguese"
    assert language_name("zh") == "Chinese"
    assert language_name("ja") == "Japanese"
    with pytest.raises(UnknownLanguageError):
        language_name("klingon")


def test_every_language_has_its_own_example():
    assert set(REQUIRED_CODES) <= set(LANGUAGE_CODES)
    sentences = [example_sentence(code) for code in LANGUAGE_CODES]
    assert len(set(sentences)) == len(LANGUAGE_CODES)
    assert all(sentence.strip() == sentence and "\n" not in sentence for sentence in sentences)


# --- fit_prompt ---

LONG_SOURCE = " ".join(["red", "green", "blue", "river", "tree", "rain", "sun", "moon"] * 5)


def test_fitting_prompt_returned_unchanged():
    prompt = build_prompt("summarize", fake_pair("base"), "the cat sat")
    assert fit_prompt(prompt, prompt.length) is prompt


def test_fit_cuts_end_of_source_and_keeps_template():
    pair = fake_pair("base")
    prompt = build_prompt("translate", pair, LONG_SOURCE, src="en", tgt="de")
    limit = prompt.length - 15

    fitted = fit_prompt(prompt, limit)

    assert fitted.truncated is True
    assert fitted.length == limit
    assert fitted.text.startswith(f"Translate English to German.\n\nEnglish: {EXAMPLE_EN}\nGerman: {EXAMPLE_DE}\n\nEnglish: ")
    assert fitted.text.endswith("\nGerman:")
    assert LONG_SOURCE.startswith(fitted.source)
    assert len(fitted.source.split()) == len(LONG_SOURCE.split()) - 15
    assert fitted.input_ids.tolist() == [ids_of(pair.tokenizer, fitted.text)]
    assert fitted.stop_strings == ["\n"]
    assert prompt.truncated is False  # the original is left as it was


def test_fit_left_side_keeps_end_of_source():
    prompt = build_prompt("summarize", fake_pair("base"), LONG_SOURCE)

    fitted = fit_prompt(prompt, prompt.length - 10, side="left")

    assert LONG_SOURCE.endswith(fitted.source)
    assert fitted.text == f"Article: {fitted.source}\nSummary:"
    assert fitted.length == prompt.length - 10


def test_fit_t5_keeps_final_eos():
    prompt = build_prompt("summarize", t5_pair(), LONG_SOURCE)

    fitted = fit_prompt(prompt, 12)

    assert fitted.length == 12
    assert fitted.input_ids[0, -1].item() == EOS_ID
    assert fitted.text.startswith("summarize: red green")


def test_fit_chat_prompt_keeps_generation_cue():
    prompt = build_prompt("translate", chat_pair(), LONG_SOURCE, src="en", tgt="de")

    fitted = fit_prompt(prompt, prompt.length - 20)

    assert fitted.length <= prompt.length - 20
    assert fitted.text.endswith("assistant :")
    assert "Translate the following English text into German." in fitted.text


def test_fit_template_alone_too_long():
    prompt = build_prompt("translate", fake_pair("base"), LONG_SOURCE, src="en", tgt="de")

    with pytest.raises(PromptTooLongError, match="template alone needs"):
        fit_prompt(prompt, 10)


def test_fit_unknown_side_rejected():
    prompt = build_prompt("summarize", fake_pair("base"), LONG_SOURCE)
    with pytest.raises(ValueError, match="Unknown truncation side 'middle'"):
        fit_prompt(prompt, 5, side="middle")
