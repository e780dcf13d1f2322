"""Task prompts (translation, summarization) per model family, and language codes."""

from cmsd_cli.tasks.languages import LANGUAGE_CODES, UnknownLanguageError, language_name, normalize_code
from cmsd_cli.tasks.prompts import TASKS, Prompt, PromptTooLongError, UnsupportedTaskError, build_prompt, fit_prompt

__all__ = [
    "LANGUAGE_CODES",
    "TASKS",
    "Prompt",
    "PromptTooLongError",
    "UnknownLanguageError",
    "UnsupportedTaskError",
    "build_prompt",
    "fit_prompt",
    "language_name",
    "normalize_code",
]
