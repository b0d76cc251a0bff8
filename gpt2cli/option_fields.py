"""Command options declared once, as fields of an options dataclass.

Each field made with :func:`option` is one option of a command: its name, type, default, flag
names, --help text and value rule. The command layer (``gpt2cli.commands.options``) turns the
fields into typer parameters, ``gpt2 train`` also reads them as YAML keys
(``gpt2cli.train.config``), and :func:`check` applies the rules. This module imports neither
typer nor anything heavy, so a core module can declare its options and the CLI can read them
without loading torch.

A value rule is one of the functions below (:func:`positive`, :func:`at_least`,
:func:`between`, :func:`finite`...) or any function of the value that returns what the value
must be (a phrase such as ``"positive"``) when it is wrong and None when it is right. Several
rules go in a tuple and are tried in order::

    lr: float | None = option(None, "Peak learning rate.", rule=(finite, positive))

gives ``--lr must be positive, not -1.0`` (None, "not given", is never checked).
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from gpt2cli.errors import UsageError

Rule = Callable[[Any], "str | None"]


def option(
    default: Any = MISSING,
    help: str = "",
    *short: str,
    long: str | None = None,
    metavar: str | None = None,
    path: bool = False,
    show_default: bool = True,
    rule: Rule | tuple[Rule, ...] = (),
    cli: bool = True,
    defines_run: bool = False,
    default_factory: Callable[[], Any] | Any = MISSING,
) -> Any:
    """A dataclass field that is an option: ``help`` is its --help text (``{default}`` there
    becomes ``[default: VALUE]``), ``short`` its one-letter names, ``long`` its long name when
    not ``--field-name`` (``--a/--b`` for a boolean pair), ``metavar`` the value's name in
    --help, ``path`` a PATH value, ``show_default`` whether --help adds the default, ``rule``
    its value check(s). ``cli=False``: no flag (a YAML key of ``gpt2 train``, or a setting
    only code changes); ``defines_run``: a resumed training run must keep it."""
    metadata = {
        "help": help,
        "short": short,
        "long": long,
        "metavar": metavar,
        "path": path,
        "show_default": show_default,
        "rules": rule if isinstance(rule, tuple) else (rule,),
        "cli": cli,
        "defines_run": defines_run,
    }
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


# --- value rules ----------------------------------------------------------------------------
# Every number rule is :func:`in_range`: a finite number, then the range. NaN compares false
# with everything (and an infinity passes a one-sided bound), so finiteness comes first and
# no comparison is written as "refuse when value < low".


def _bound(number: float) -> str:
    """A bound as a message shows it: 1, 0.5, 1e-08 (a whole float without ".0")."""
    if isinstance(number, float) and number.is_integer() and abs(number) < 1e16:
        return str(int(number))
    return str(number)


def range_text(
    low: float | None, high: float | None, low_open: bool = False, high_open: bool = False
) -> str:
    """What a number in the range must be: "positive", "between 1 and 22", "above 0 and at
    most 1"..."""
    if low == 0 and high is None:
        return "positive" if low_open else "0 or more"
    if low is not None and high is not None and not (low_open or high_open):
        return f"between {_bound(low)} and {_bound(high)}"
    ends = []
    if low is not None:
        ends.append(f"{'above' if low_open else 'at least'} {_bound(low)}")
    if high is not None:
        ends.append(f"{'below' if high_open else 'at most'} {_bound(high)}")
    return " and ".join(ends)


def in_range(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Rule:
    """A finite number from ``low`` to ``high`` (None: no bound; an end excluded when
    ``*_open``); a bool is no number."""

    def rule(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "a finite number"
        if not math.isfinite(value):
            return "a finite number"
        above_low = low is None or (value > low if low_open else value >= low)
        below_high = high is None or (value < high if high_open else value <= high)
        return None if above_low and below_high else range_text(low, high, low_open, high_open)

    return rule


positive = in_range(0, low_open=True)
non_negative = in_range(0)
finite = in_range()


def at_least(low: float) -> Rule:
    return in_range(low)


def at_most(high: float) -> Rule:
    return in_range(high=high)


def between(low: float, high: float) -> Rule:
    """``low <= value <= high``."""
    return in_range(low, high)


def one_of(*choices: str) -> Rule:
    """One of the texts ``choices``."""
    text = ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]
    return lambda value: None if value in choices else text


def refusal(name: str, wanted: str, value: Any) -> UsageError:
    """The one wording of a value that breaks a rule: ``--x must be WANTED, not VALUE``."""
    shown = repr(value) if isinstance(value, str) else value
    return UsageError(f"{name} must be {wanted}, not {shown}")


def require(value: Any, name: str, *rules: Rule) -> Any:
    """``value`` when it keeps every rule, else the :func:`refusal` of the first it breaks."""
    for rule in rules:
        wanted = rule(value)
        if wanted is not None:
            raise refusal(name, wanted, value)
    return value


# --- reading the declarations ---------------------------------------------------------------


def flag(name: str) -> str:
    """A field's long flag: ``batch_size`` → ``--batch-size``."""
    return "--" + name.replace("_", "-")


def kind(hint: Any) -> Any:
    """The value type an annotation asks for: int, float, bool, str, dict, list, or a tuple
    of them for a union such as ``int | str``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = tuple(a for a in typing.get_args(hint) if a is not type(None))
        return kind(args[0]) if len(args) == 1 else args
    return typing.get_origin(hint) or hint


def kinds(cls: type) -> dict[str, Any]:
    """Field name → :func:`kind` of its annotation, in declaration order."""
    hints = typing.get_type_hints(cls)
    return {f.name: kind(hints[f.name]) for f in fields(cls)}


@dataclass(frozen=True)
class Flag:
    """One command-line option, as a CLI library needs it."""

    name: str  # the dataclass field
    names: tuple[str, ...]  # "--batch-size", "-b"
    type: Any  # the annotation the flag's value is parsed as
    default: Any
    help: str
    metavar: str | None
    show_default: bool


def _default(f: Field) -> Any:
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None if f.default is MISSING else f.default


def flags(cls: type) -> list[Flag]:
    """The command-line options of an options dataclass, in its order (that of --help)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        meta = f.metadata
        if not meta.get("cli"):
            continue
        value_kind = kind(hints[f.name])
        if meta["path"]:
            value_type = Path
        elif isinstance(value_kind, tuple):  # int | str: read as text, checked by coerce
            value_type = str
        elif value_kind is list:
            value_type = list[str]
        else:
            value_type = value_kind
        default = _default(f)
        text = meta["help"].replace("{default}", f"[default: {default}]")
        names = (meta["long"] or flag(f.name), *meta["short"])
        out.append(
            Flag(f.name, names, value_type, default, text, meta["metavar"], meta["show_default"])
        )
    return out


def defining_run(cls: type) -> tuple[str, ...]:
    """The fields a resumed run must keep."""
    return tuple(f.name for f in fields(cls) if f.metadata.get("defines_run"))


# --- checking values ------------------------------------------------------------------------

_KIND_TEXT = {
    int: "an integer",
    float: "a finite number",
    bool: "true or false",
    str: "a string",
    dict: "a mapping",
    list: "a list of strings",
    (int, str): "an integer or 'auto'",
}


def coerce(value_kind: Any, value: Any) -> Any:
    """``value`` (from YAML or a flag) as ``value_kind``; ValueError when it is not one.
    The text "auto" is the one string an ``int | str`` option takes."""
    if value is None:
        return None
    if value_kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        if isinstance(value, str):
            value = float(value) if any(c in value for c in ".eE") else int(value)
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
        return int(value)
    if value_kind is float:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
        if not math.isfinite(number):  # nan passes every range check and trains to nan
            raise ValueError
        return number
    if value_kind is bool:
        if not isinstance(value, bool):
            raise ValueError
        return value
    if value_kind is str:
        return str(value)
    if value_kind == (int, str):
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if isinstance(value, bool):
            raise ValueError
        return int(value)
    if value_kind is dict:
        if not isinstance(value, dict):
            raise ValueError
        return dict(value)
    if value_kind is list:
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
            raise ValueError
        return list(values)
    return value


def coerce_field(kinds_by_name: dict[str, Any], name: str, value: Any, source: str | None) -> Any:
    """:func:`coerce` for one field, a UsageError naming the flag (or ``source``: a YAML file)
    when the value does not fit."""
    value_kind = kinds_by_name[name]
    try:
        return coerce(value_kind, value)
    except (TypeError, ValueError):
        what = f"{source}: {name}" if source else flag(name)
        text = _KIND_TEXT.get(value_kind, "valid")
        raise UsageError(f"{what} must be {text}, not {value!r}") from None


def check(options: Any) -> None:
    """UsageError for the first field whose value breaks one of its rules (None, "not
    given", and a text such as "auto" in a field that is not text are not checked)."""
    value_kinds: dict[str, Any] | None = None  # read only when a text is to be checked
    for f in fields(options):
        value = getattr(options, f.name)
        rules = f.metadata.get("rules", ())
        if value is None or not rules:
            continue
        if isinstance(value, str):
            value_kinds = value_kinds or kinds(type(options))
            if value_kinds[f.name] is not str:
                continue
        require(value, (f.metadata["long"] or flag(f.name)).split("/")[0], *rules)
