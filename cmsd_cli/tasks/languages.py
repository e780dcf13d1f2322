"""Language codes, their English names, and one hand-written parallel sentence per language.

The sentence means the same in every language, so any pair of known languages has a one-shot example
in both directions.
"""

from __future__ import annotations


class UnknownLanguageError(ValueError):
    """A language code cmsd has no name and example sentence for; the message lists the known codes."""


# code -> (English name, "The children played in the garden until it got dark." in that language).
# A sentence far from news keeps small base models from copying the example into their translation:
# with a news example about a council budget, Gemma 3 270M base repeated it for 4 of 6 news sentences.
_LANGUAGES: dict[str, tuple[str, str]] = {
    "en": ("English", "The children played in the garden until it got dark."),
    "de": ("German", "Die Kinder spielten im Garten, bis es dunkel wurde."),
    "fr": ("French", "Les enfants ont joué dans le jardin jusqu'à ce qu'il fasse nuit."),
    "ro": ("Romanian", "Copiii s-au jucat în grădină până s-a întunecat."),
    "es": ("Spanish", "Los niños jugaron en el jardín hasta que oscureció."),
    "it": ("Italian", "I bambini hanno giocato in giardino finché non è diventato buio."),
    "pt": ("Portuguese", "As crianças brincaram no jardim até escurecer."),
    "nl": ("Dutch", "De kinderen speelden in de tuin tot het donker werd."),
    "cs": ("Czech", "Děti si hrály na zahradě, dokud se nesetmělo."),
    "pl": ("Polish", "Dzieci bawiły się w ogrodzie, dopóki się nie ściemniło."),
    "ru": ("Russian", "Дети играли в саду, пока не стемнело."),
    "uk": ("Ukrainian", "Діти гралися в саду, доки не стемніло."),
    "sv": ("Swedish", "Barnen lekte i trädgården tills det blev mörkt."),
    "fi": ("Finnish", "Lapset leikkivät puutarhassa, kunnes tuli pimeää."),
    "tr": ("Turkish", "Çocuklar hava kararana kadar bahçede oynadı."),
    "zh": ("Chinese", "孩子们在花园里一直玩到天黑。"),
    "ja": ("Japanese", "子どもたちは暗くなるまで庭で遊んだ。"),
    "ko": ("Korean", "아이들은 어두워질 때까지 정원에서 놀았다."),
}

LANGUAGE_CODES = tuple(sorted(_LANGUAGES))


def normalize_code(code: str) -> str:
    """Return the known base code for `code` ("EN", "en-US" and "pt_BR" give "en" and "pt"); raise UnknownLanguageError."""
    base = code.strip().lower().replace("_", "-").split("-", 1)[0]
    if base not in _LANGUAGES:
        known = ", ".join(f"{known} ({_LANGUAGES[known][0]})" for known in LANGUAGE_CODES)
        raise UnknownLanguageError(f"Unknown language code {code!r}; use one of {known}.")
    return base


def language_name(code: str) -> str:
    """English name of a language code, e.g. "German" for "de"; raise UnknownLanguageError for an unknown code."""
    return _LANGUAGES[normalize_code(code)][0]


def example_sentence(code: str) -> str:
    """Return the parallel example sentence in the language of `code`."""
    return _LANGUAGES[normalize_code(code)][1]
