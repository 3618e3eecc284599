"""The ranges a node's schema declares, enforced as declared.

ComfyUI checks a widget's min and max itself only for inputs that the node's
`validate_inputs` does not receive, and never checks finiteness (NaN passes every
comparison). The pack's nodes therefore take every input in `validate_inputs`
(`**values`) and check them here against the same `io.*.Input` declarations the
schema shows, so the range a user sees is the range that is enforced:

    INT     an integer (bools refused) in [min, max]
    FLOAT   a finite number in [min, max]
    COMBO   one of the declared options
    BOOLEAN a bool
    STRING  a string of at most MAX_STRING_CHARS characters

Messages start with the input's name. Linked inputs arrive as None at queue time;
`check_execution_inputs`, first in `execute`, checks them then: widget values linked
from other nodes against the same declarations, and MODEL, VAE, CONDITIONING, LATENT,
SIGMAS, PSI_REWARD and IMAGE inputs for their kind (an API prompt may hold a literal
where a link belongs), before any model pass.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

from comfy_api.latest import io

from ..comfy_host.checks import LINK_CHECKS, HostInputError

#: longest text any string widget of the pack takes (JSON targets, prompts, file name prefixes)
MAX_STRING_CHARS = 20_000


def declared_inputs(cls) -> dict[str, io.Input]:
    """{input name: its io.*.Input declaration} of a V3 node class."""
    return {spec.id: spec for spec in cls.define_schema().inputs}


def _bounds_text(spec) -> str:
    low = getattr(spec, "min", None)
    high = getattr(spec, "max", None)
    if low is not None and high is not None:
        return f"in [{low:g}, {high:g}]"
    if low is not None:
        return f">= {low:g}"
    if high is not None:
        return f"<= {high:g}"
    return "any value"


def _check_number(name: str, spec, value, integer: bool) -> None:
    kind = "an integer" if integer else "a finite number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be {kind} {_bounds_text(spec)}; got {value!r:.80}")
    if integer and not isinstance(value, int):
        if not (math.isfinite(value) and value == int(value)):
            raise ValueError(f"{name} must be {kind} {_bounds_text(spec)}; got {value!r}")
    if not integer and not math.isfinite(value):
        raise ValueError(f"{name} must be {kind} {_bounds_text(spec)}; got {value!r}")
    low, high = getattr(spec, "min", None), getattr(spec, "max", None)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {kind} {_bounds_text(spec)}; got {value!r}")


MODEL_CHOICE = "psi_model_choice"


def model_choice(spec: io.Combo.Input) -> io.Combo.Input:
    """Mark a combo of model files or folders. Its options are what the model folders hold
    now, and the node's own check resolves the choice where it is used (by name in a scan
    of the model folders, never as a path), so a file of a backend not in use stays
    unchecked: saved workflows name files that other machines lack. The declaration check
    refuses only what is no name: non-text, and paths that leave the model folder."""
    setattr(spec, MODEL_CHOICE, True)
    return spec


def _check_model_choice(name: str, value) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be the name of a model file or folder; got {value!r:.80}")
    parts = value.replace("\\", "/").split("/")
    if value.startswith(("/", "\\")) or ".." in parts or ":" in parts[0] or len(value) > 1000:
        raise ValueError(f"{name} must name a file or folder inside the model folder; got {value!r:.80}")


def check_value(name: str, spec: io.Input, value) -> None:
    """One value against its declaration (ValueError/TypeError naming the input)."""
    if isinstance(spec, io.Int.Input):
        _check_number(name, spec, value, integer=True)
    elif isinstance(spec, io.Float.Input):
        _check_number(name, spec, value, integer=False)
    elif isinstance(spec, io.Boolean.Input):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be true or false; got {value!r:.80}")
    elif isinstance(spec, io.Combo.Input) and getattr(spec, MODEL_CHOICE, False):
        _check_model_choice(name, value)
    elif isinstance(spec, io.Combo.Input):
        options = list(spec.options or [])
        if not isinstance(value, str) or value not in options:
            shown = ", ".join(map(str, options[:20])) + (f" … ({len(options)} in all)" if len(options) > 20 else "")
            raise ValueError(f"{name} must be one of {shown}; got {value!r:.80}")
    elif isinstance(spec, io.String.Input):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be text; got {type(value).__name__}")
        if len(value) > MAX_STRING_CHARS:
            raise ValueError(f"{name} is {len(value)} characters long; at most {MAX_STRING_CHARS} are accepted")


def check_declared(cls, values: Mapping[str, object]) -> list[tuple[str, ValueError]]:
    """Queue time: every value in `values` against `cls`'s declared inputs. Links arrive as
    None and are skipped; a value given for an input that only a link can fill (MODEL,
    LATENT, PSI_REWARD, …) is a literal in an API prompt, refused by the input's name.
    Raises at the first bad value, except options not offered, which are returned
    ([(input, error)]) so that `validate` can prefer the node's own, more telling message
    (a missing model file's, say)."""
    specs = declared_inputs(cls)
    unoffered = []
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None or value is None:
            continue
        if not isinstance(spec, io.WidgetInput):
            raise TypeError(f"{name} must be connected to a node that outputs {spec.io_type}; got the literal "
                            f"{type(value).__name__} {str(value)[:60]!r}")
        try:
            check_value(name, spec, value)
        except ValueError as err:
            if not isinstance(spec, io.Combo.Input) or not isinstance(value, str):
                raise
            unoffered.append((name, err))
    return unoffered


def check_execution_inputs(cls, values: Mapping[str, object]) -> None:
    """First thing in `execute`: every input in `values` ({name: value}, e.g. the call's
    arguments) against its declaration; unconnected optional inputs (None) are skipped."""
    for name, spec in declared_inputs(cls).items():
        value = values.get(name)
        if value is None:
            if not spec.optional:
                raise HostInputError(f"{name} is required but its link gave no value (None)")
            continue
        link_check = LINK_CHECKS.get(str(getattr(spec, "io_type", "")))
        if link_check is not None:
            link_check(name, value)
        else:
            check_value(name, spec, value)


def validate(cls, values: Mapping[str, object], check: Callable[[], object] | None = None,
             needs: tuple[str, ...] = ()) -> bool | str:
    """`validate_inputs` of a pack node: True, or the message of the first failed check.
    The declared ranges are checked first; then `check` (the node's own cross-input checks),
    skipped when an input named in `needs` is a link (None), not known before execution, or
    a required one is missing (ComfyUI reports that itself); optional inputs left out of
    the prompt take their defaults in `check`.
    An option that is not offered is refused either way, with the node's message first where
    it has one (a model file not found, say: it says where the file was looked for)."""
    try:
        unoffered = check_declared(cls, values)
        try:
            if check is not None and not _linked_or_missing(cls, values, needs):
                check()
        except (ValueError, TypeError, OverflowError) as err:
            for name, _ in unoffered:
                if values[name] and str(values[name]) in str(err):
                    return f"{name}: {err}"
            if not unoffered:
                raise
            return f"{err}\n({unoffered[0][1]})"
        if unoffered:
            return str(unoffered[0][1])
    except (ValueError, TypeError, OverflowError) as err:
        return str(err)
    return True


def _linked_or_missing(cls, values: Mapping[str, object], needs: tuple[str, ...]) -> bool:
    specs = declared_inputs(cls)
    return any(values.get(name) is None and (name in values or not specs[name].optional) for name in needs)
