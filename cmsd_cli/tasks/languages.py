"""Language codes, their English names, and one hand-written parallel sentence per language.

The sentence means the same in every language, so any pair of known languages has a one-shot example
in both directions.
"""

from __future__ import annotations


class UnknownLanguageError(ValueError):
    """A language code cmsd has no name and example sentence for; the message lists the known codes."""


# code -> (English name, "The city council approved the new budget on Tuesday." in that language)
_LANGUAGES: dict[str, tuple[str, str]] = {
    "en": ("English", "The city council approved the new budget on Tuesday."),
    "de": ("German", "Der Stadtrat hat am Dienstag den neuen Haushalt genehmigt."),
    "fr": ("French", "Le conseil municipal a approuvé le nouveau budget mardi."),
    "ro": ("Romanian", "Consiliul local a aprobat noul buget marți."),
    "es": ("Spanish", "El ayuntamiento aprobó el nuevo presupuesto el martes."),
    "it": ("Italian", "Il consiglio comunale ha approvato il nuovo bilancio martedì."),
    "pt": ("Portuguese", "A câmara municipal aprovou o novo orçamento na terça-feira."),
    "nl": ("Dutch", "De gemeenteraad heeft dinsdag de nieuwe begroting goedgekeurd."),
    "cs": ("Czech", "Zastupitelstvo města v úterý schválilo nový rozpočet."),
    "pl": ("Polish", "Rada miejska zatwierdziła we wtorek nowy budżet."),
    "ru": ("Russian", "Городской совет во вторник утвердил новый бюджет."),
    "uk": ("Ukrainian", "Міська рада у вівторок затвердила новий бюджет."),
    "sv": ("Swedish", "Kommunfullmäktige godkände den nya budgeten på tisdagen."),
    "fi": ("Finnish", "Kaupunginvaltuusto hyväksyi uuden talousarvion tiistaina."),
    "tr": ("Turkish", "Belediye meclisi salı günü yeni bütçeyi onayladı."),
    "zh": ("Chinese", "市议会周二批准了新预算。"),
    "ja": ("Japanese", "市議会は火曜日に新しい予算を承認した。"),
    "ko": ("Korean", "시의회는 화요일에 새 예산을 승인했다."),
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
