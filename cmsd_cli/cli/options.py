"""Model and decoding options shared by translate, summarize, bench and calibrate.

A command declares a parameter named `models` or `decoding` and applies the matching decorator.
The decorator replaces that parameter with the individual command-line options and passes the
command one dataclass that contains their values:

    @app.command()
    @model_options
    @decoding_options(max_new_tokens=128)
    def translate(files: list[Path], models: ModelOptions, decoding: DecodingOptions) -> None:
        pair = models.load_pair()
        result = speculative_generate(pair.target, pair.draft, input_ids, **decoding.engine_kwargs(pair))

Policy and verification parameters default to None, meaning "not set": only the ones the user set
are passed to the engine, so the defaults in `cmsd_cli.policies` stay the only defaults.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional

import typer

from cmsd_cli.cli.errors import UserInputError

logger = logging.getLogger(__name__)

POLICIES = ("static", "heuristic", "threshold", "entropy-bound", "cmsd")
VERIFY_MODES = ("greedy", "sample", "tolerant", "cmsd")
DEFAULT_POLICY = "cmsd"
DEFAULT_VERIFY = "greedy"
NO_PROFILE = "none"  # --profile none: neither a profile file nor the preset's own profile

MODEL_PANEL = "Model"
DECODING_PANEL = "Decoding"


@dataclass(frozen=True)
class ModelOptions:
    """Target and draft model names, and the device and dtype to load them with."""

    preset: Optional[str] = None
    target: Optional[str] = None
    draft: Optional[str] = None
    device: str = "auto"
    dtype: str = "auto"

    def check(self) -> None:
        """Reject an unknown preset before anything slow happens."""
        if self.preset is None:
            return
        from cmsd_cli.models import PRESETS

        if self.preset not in PRESETS:
            known = ", ".join(sorted(PRESETS))
            raise UserInputError(f"Unknown preset '{self.preset}', expected one of: {known}.")

    def load_pair(self):
        """Load the model pair, turning a load failure into a `UserInputError` with the loader's message."""
        from cmsd_cli.models import ModelLoadError, load_pair

        self.check()
        try:
            return load_pair(
                preset=self.preset, target=self.target, draft=self.draft, device=self.device, dtype=self.dtype
            )
        except ModelLoadError as error:
            raise UserInputError(str(error)) from error


@dataclass(frozen=True)
class DecodingOptions:
    """Draft-length policy, verification rule, sampling settings and an optional calibration profile."""

    policy: str = DEFAULT_POLICY
    verify: str = DEFAULT_VERIFY
    draft_length: Optional[int] = None
    k_min: Optional[int] = None
    k_max: Optional[int] = None
    theta_draft: Optional[float] = None
    confidence_weight: Optional[float] = None
    beta: Optional[int] = None
    tau: Optional[float] = None
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_k: Optional[int] = None
    top_p: Optional[float] = None
    seed: Optional[int] = None
    profile: Optional[Path] = None

    @property
    def profile_disabled(self) -> bool:
        """Whether `--profile none` asked for the built-in defaults instead of any profile."""
        return self.profile is not None and str(self.profile).lower() == NO_PROFILE

    def check(self) -> None:
        """Reject a profile path that is a folder or does not exist before any model is loaded."""
        if self.profile_disabled:
            return
        if self.profile is not None and self.profile.is_dir():
            raise UserInputError(
                f"Profile '{self.profile}' is a folder, but a profile JSON file written by "
                "'cmsd calibrate --out' is expected."
            )
        if self.profile is not None and not self.profile.is_file():
            raise UserInputError(
                f"Profile file '{self.profile}' not found, so check the path or write one with 'cmsd calibrate'."
            )

    def policy_params(self) -> dict[str, Any]:
        """Policy parameters the user set on the command line."""
        names = ("draft_length", "k_min", "k_max", "theta_draft", "confidence_weight")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def verify_params(self) -> dict[str, Any]:
        """Verification parameters the user set on the command line."""
        names = ("beta", "tau")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def engine_kwargs(self, pair=None) -> dict[str, Any]:
        """Keyword arguments for `speculative_generate`, with profile values under the user's own.

        `pair` is needed only with `--profile`, because a profile is keyed by model pair and device.
        """
        policy_params: dict[str, Any] = {}
        verify_params: dict[str, Any] = {}
        profile_path = self.profile_in_effect(pair)
        if profile_path is not None:
            profile = self._load_profile(pair, profile_path)
            policy_params.update(self._profile_params(profile, profile_path, "policy", self.policy))
            verify_params.update(self._profile_params(profile, profile_path, "verify", self.verify))
        policy_params.update(self.policy_params())
        verify_params.update(self.verify_params())
        if profile_path is not None:
            self._check_merged(profile_path, policy_params, verify_params)

        kwargs: dict[str, Any] = {
            "policy": self.policy,
            "verify": self.verify,
            "policy_params": policy_params or None,
            "verify_params": verify_params or None,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "seed": self.seed,
        }
        return kwargs

    def profile_in_effect(self, pair) -> Optional[Path]:
        """Return the profile whose values apply: --profile, else the one shipped with the pair's preset.

        None with `--profile none`, and when neither exists.
        """
        if self.profile_disabled:
            return None
        if self.profile is not None:
            return self.profile
        if pair is None:
            return None
        from cmsd_cli.models.presets import shipped_profile

        return shipped_profile(pair)

    def _load_profile(self, pair, path: Path) -> dict[str, Any]:
        if pair is None:
            raise ValueError("engine_kwargs() needs the loaded model pair when a profile is set")
        from cmsd_cli.calibrate import ProfileError, load_profile

        if path != self.profile:
            # A preset's own profile was measured on another machine by design, so skip that warning.
            return load_profile(path, pair, warn_on_other_machine=False)
        self.check()
        try:
            return load_profile(path, pair)
        except ProfileError as error:
            # These messages already name the file and the fix.
            raise UserInputError(str(error)) from error
        except (OSError, ValueError) as error:
            raise UserInputError(f"Profile file '{path}' could not be used: {error}") from error

    def _check_merged(self, path: Path, policy_params: dict[str, Any], verify_params: dict[str, Any]) -> None:
        """Reject profile values that clash with command-line ones, such as a profile k_min above --k-max."""
        from cmsd_cli.policies import make_policy, make_verifier

        try:
            make_policy(self.policy, policy_params)
            make_verifier(self.verify, verify_params)
        except ValueError as error:
            raise UserInputError(
                f"Profile '{path}' combined with the command-line options gives invalid decoding "
                f"parameters ({error}), so change the options."
            ) from error

    def _profile_params(self, profile: dict[str, Any], path: Path, kind: str, name: str) -> dict[str, Any]:
        """Return the profile's parameters that the chosen policy or verification rule takes.

        A profile contains parameters for the cmsd policy, so with another --policy only the ones
        that policy shares (such as confidence_weight) apply; the others are dropped with a warning.
        """
        from cmsd_cli.policies import parameter_names

        params = dict(profile.get(f"{kind}_params") or {})
        accepted = parameter_names(kind, name)
        dropped = sorted(set(params) - accepted)
        if dropped and path == self.profile:
            flag = "--policy" if kind == "policy" else "--verify"
            logger.warning(
                "Profile '%s' sets %s, which %s %s does not take, so they are not used.",
                path, ", ".join(dropped), flag, name,
            )
        return {key: value for key, value in params.items() if key in accepted}


def _default(name: str, parameter: str, *, kind: str = "policy") -> object:
    """Return the default of one policy or verification parameter, for help text."""
    from cmsd_cli.policies import POLICIES, VERIFIERS

    registry = POLICIES if kind == "policy" else VERIFIERS
    return next(field.default for field in dataclasses.fields(registry[name]) if field.name == parameter)


def _model_parameters() -> list[inspect.Parameter]:
    def option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)

    return [
        option(
            "preset",
            Annotated[
                Optional[str],
                typer.Option(
                    "--preset",
                    help="Named target/draft pair; 'cmsd models' lists them. Without --preset and --target, "
                    "'offline' is used: Gemma 3 270M from a PyPI package, no network needed.",
                    rich_help_panel=MODEL_PANEL,
                ),
            ],
            None,
        ),
        option(
            "target",
            Annotated[
                Optional[str],
                typer.Option(
                    "--target",
                    help="Target model: a Hugging Face hub id, a local model folder, a .gguf file or "
                    "package:<pip name>. Replaces the preset's target.",
                    rich_help_panel=MODEL_PANEL,
                ),
            ],
            None,
        ),
        option(
            "draft",
            Annotated[
                Optional[str],
                typer.Option(
                    "--draft",
                    help="Draft model with the target's tokenizer: a hub id, local folder, .gguf file or package, "
                    "'self-int8' (an int8 copy of the target), 'self-int8-top<N>k' (the same with an LM head over the N x 1024 "
                    "most frequent tokens) or 'none' (target only). Default: the preset's draft.",
                    rich_help_panel=MODEL_PANEL,
                ),
            ],
            None,
        ),
        option(
            "device",
            Annotated[
                str,
                typer.Option(
                    "--device",
                    help="Torch device: 'auto', 'cpu', 'cuda', 'cuda:1', 'mps'.",
                    rich_help_panel=MODEL_PANEL,
                ),
            ],
            "auto",
        ),
        option(
            "dtype",
            Annotated[
                str,
                typer.Option(
                    "--dtype",
                    help="Weight dtype: 'auto', 'float32', 'bfloat16' or 'float16'.",
                    rich_help_panel=MODEL_PANEL,
                ),
            ],
            "auto",
        ),
    ]


def _decoding_parameters(max_new_tokens: int) -> list[inspect.Parameter]:
    def option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)

    def decoding(*decls: str, help: str, **extra: Any) -> typer.models.OptionInfo:
        return typer.Option(*decls, help=help, rich_help_panel=DECODING_PANEL, **extra)

    return [
        option(
            "policy",
            Annotated[
                str,
                decoding(
                    "--policy",
                    help="Draft-length policy: 'cmsd' sets the draft length from the draft's confidence; "
                    "'static', 'heuristic', 'threshold' and 'entropy-bound' are baselines.",
                ),
            ],
            DEFAULT_POLICY,
        ),
        option(
            "verify",
            Annotated[
                str,
                decoding(
                    "--verify",
                    help="Verification rule: 'greedy' gives exactly the target's greedy output, 'sample' its "
                    "sampling distribution; 'tolerant' and 'cmsd' accept near-top tokens and are not lossless.",
                ),
            ],
            DEFAULT_VERIFY,
        ),
        option(
            "draft_length",
            Annotated[
                Optional[int],
                decoding(
                    "--draft-length",
                    help="Draft tokens per iteration for the 'static' policy, and the starting length for "
                    f"'heuristic'. Default: {_default('static', 'draft_length')}.",
                    min=1,
                ),
            ],
            None,
        ),
        option(
            "k_min",
            Annotated[
                Optional[int], decoding(
                    "--k-min",
                    help=f"Smallest draft budget of the 'cmsd' policy, in tokens. Default: {_default('cmsd', 'k_min')}, or the value in the preset's profile (see --profile).",
                    min=1,
                )
            ],
            None,
        ),
        option(
            "k_max",
            Annotated[
                Optional[int], decoding(
                    "--k-max",
                    help=f"Largest draft budget of the 'cmsd' policy, in tokens. Default: {_default('cmsd', 'k_max')}, or the value in the preset's profile (see --profile).",
                    min=1,
                )
            ],
            None,
        ),
        option(
            "theta_draft",
            Annotated[
                Optional[float],
                decoding(
                    "--theta-draft",
                    help="Stop drafting after a token whose confidence is below this value (0 to 1). "
                    f"Default: {_default('cmsd', 'theta_draft')}, or the value in the preset's profile (see --profile).",
                    min=0.0,
                    max=1.0,
                ),
            ],
            None,
        ),
        option(
            "confidence_weight",
            Annotated[
                Optional[float],
                decoding(
                    "--confidence-weight",
                    help="Weight w of (1 - normalised entropy) against the top-1/top-2 margin in the "
                    f"confidence, 0 to 1. Default: {_default('cmsd', 'confidence_weight')}, or the value in the preset's profile (see --profile).",
                    min=0.0,
                    max=1.0,
                ),
            ],
            None,
        ),
        option(
            "beta",
            Annotated[
                Optional[int],
                decoding(
                    "--beta",
                    help="Largest target rank a draft token may have and still be accepted ('tolerant' and "
                    f"'cmsd' verification). Default: {_default('tolerant', 'beta', kind='verify')}.",
                    min=1,
                ),
            ],
            None,
        ),
        option(
            "tau",
            Annotated[
                Optional[float],
                decoding(
                    "--tau",
                    help="Largest gap in target log-probability between the top token and an accepted draft "
                    f"token ('tolerant' and 'cmsd' verification). Default: {_default('tolerant', 'tau', kind='verify')}.",
                    min=0.0,
                ),
            ],
            None,
        ),
        option(
            "max_new_tokens",
            Annotated[int, decoding("--max-new-tokens", help="Maximum number of new tokens per input line.", min=1)],
            max_new_tokens,
        ),
        option(
            "temperature",
            Annotated[
                float, decoding("--temperature", help="Sampling temperature ('sample' verification).", min=0.0)
            ],
            1.0,
        ),
        option(
            "top_k",
            Annotated[
                Optional[int], decoding("--top-k", help="Sample only from the k most likely tokens.", min=1)
            ],
            None,
        ),
        option(
            "top_p",
            Annotated[
                Optional[float],
                decoding(
                    "--top-p", help="Sample only from the smallest token set with this total probability.",
                    min=0.0, max=1.0,
                ),
            ],
            None,
        ),
        option(
            "seed",
            Annotated[Optional[int], decoding("--seed", help="Random seed, so sampled outputs repeat.")],
            None,
        ),
        option(
            "profile",
            Annotated[
                Optional[Path],
                decoding(
                    "--profile",
                    help="Calibration profile written by 'cmsd calibrate'; options given on the command line "
                    "override its values. Without it the preset's own profile applies, if it has one "
                    "(the offline preset does); 'none' uses the built-in defaults.",
                ),
            ],
            None,
        ),
    ]


def _replace_parameter(
    function: Callable[..., Any], name: str, options_class: type, new_parameters: list[inspect.Parameter]
) -> Callable[..., Any]:
    """Swap the parameter `name` of `function` for `new_parameters`, and pack them back into `options_class`."""
    signature = inspect.signature(function, eval_str=True)
    if name not in signature.parameters:
        raise TypeError(f"{function.__qualname__} needs a parameter named '{name}' to receive {options_class.__name__}")

    option_names = [parameter.name for parameter in new_parameters]
    kept = [parameter for parameter in signature.parameters.values() if parameter.name != name]
    clashes = {parameter.name for parameter in kept} & set(option_names)
    if clashes:
        raise TypeError(f"{function.__qualname__} already has parameters named {sorted(clashes)}")

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {option: kwargs.pop(option) for option in option_names if option in kwargs}
        kwargs[name] = options_class(**values)
        return function(*args, **kwargs)

    # Keyword-only options must follow every positional parameter in a valid signature. They go before
    # options added by an inner decorator, so help panels appear in decorator order from the top.
    positional = [parameter for parameter in kept if parameter.kind is not inspect.Parameter.KEYWORD_ONLY]
    keyword_only = [parameter for parameter in kept if parameter.kind is inspect.Parameter.KEYWORD_ONLY]
    wrapper.__signature__ = signature.replace(parameters=positional + new_parameters + keyword_only)
    # Typer reads type hints as well as the signature, so both must describe the new parameters.
    wrapper.__annotations__ = {
        parameter.name: parameter.annotation for parameter in wrapper.__signature__.parameters.values()
    }
    return wrapper


def model_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command --preset, --target, --draft, --device and --dtype, packed into its `models` parameter."""
    return _replace_parameter(function, "models", ModelOptions, _model_parameters())


def decoding_options(
    *, max_new_tokens: int = 128, omit: tuple[str, ...] = ()
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the policy, verification, sampling and --profile options, packed into `decoding`.

    `max_new_tokens` is the command's default for --max-new-tokens. `omit` names DecodingOptions
    fields the command does not offer, such as ("policy", "verify"); those keep their defaults.
    """
    known = {field.name for field in dataclasses.fields(DecodingOptions)}
    unknown = sorted(set(omit) - known)
    if unknown:
        raise TypeError(f"decoding_options cannot omit {unknown}, because DecodingOptions has no such fields")

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        parameters = [parameter for parameter in _decoding_parameters(max_new_tokens) if parameter.name not in omit]
        return _replace_parameter(function, "decoding", DecodingOptions, parameters)

    return decorate

