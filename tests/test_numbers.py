"""Every number a user gives is checked where it is parsed: NaN, infinities and values outside
the range that means something are a usage error (exit 2, one line), never a silently
disabled rule or a run that trains until its loss is NaN."""

from __future__ import annotations

import types
import typing
from pathlib import Path

import pytest

from gpt2cli.errors import UsageError
from gpt2cli.option_fields import at_least, between, in_range, positive, require

HOSTILE = ("nan", "NaN", "inf", "-inf", "1e400", "-1e400")


def _float_options() -> set[tuple[str, str]]:
    """(command, --option) of every option of every command that takes a float, read from the
    app's own command tree (every option, `train`'s included, is a parameter there)."""
    import typer.main

    from gpt2cli.app import app

    found: set[tuple[str, str]] = set()

    def walk(command, path: list[str]) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
            return
        for param in command.params:
            hint = param.type_descriptor.annotation
            union = typing.get_origin(hint) in (typing.Union, types.UnionType)
            if hint is float or (union and float in typing.get_args(hint)):
                found.add((" ".join(path), max(param.opts, key=len)))

    walk(typer.main.get_command(app), [])
    return found


# What each command needs besides the number, so that the number is what is judged.
def _base(command: str, tmp_path: Path) -> list[str]:
    text = tmp_path / "doc.jsonl"
    text.write_text('{"text": "a few words"}\n')
    links = tmp_path / "links.txt"
    links.write_text("http://127.0.0.1:9/\n")  # never fetched: the number is judged first
    return {
        "corpus filter": ["corpus", "filter", str(text)],
        "corpus fetch": ["corpus", "fetch", str(links), "-o", str(tmp_path / "crawl")],
        "corpus dedup": ["corpus", "dedup", str(text)],
        "corpus dedup-signatures": [
            "corpus", "dedup-signatures", "-o", str(tmp_path / "s.ddp"), str(text),
        ],
        "pack": ["pack", "-o", str(tmp_path / "p"), str(text)],
        "sample": ["sample", "--model", str(tmp_path / "none"), "hello"],
        "overlap build": ["overlap", "build", "-o", str(tmp_path / "f.bloom"), str(text)],
        "overlap check": ["overlap", "check", "-F", str(tmp_path / "f.bloom"), str(text)],
        "train": ["train", "--data", str(tmp_path / "none"), "-o", str(tmp_path / "run")],
    }[command]  # fmt: skip


# Numbers given in a string of the option's own syntax, and ranges beyond finiteness.
EXTRA = [
    ("corpus filter", ["--threshold", "symbol-ratio=nan"]),
    ("corpus filter", ["--threshold", "symbol-ratio=inf"]),
    ("corpus filter", ["--threshold", "symbol-ratio=-0.5"]),
    ("corpus filter", ["--lang-score", "2"]),
    ("corpus filter", ["--lang-score", "-0.1"]),
    ("overlap build", ["--capacity", "inf"]),
    ("overlap build", ["--capacity", "nan"]),
    ("sample", ["--temperature", "-1"]),
    ("sample", ["--top-p", "0"]),
    ("train", ["--weight-decay", "-1"]),
]


def test_every_float_option_is_known_here() -> None:
    """A new float option joins _base (and so the test below) or this fails."""
    commands = {command for command, _ in _float_options()}
    assert commands <= {"corpus filter", "corpus fetch", "corpus dedup", "corpus dedup-signatures",
                        "pack", "sample", "overlap build", "overlap check", "train"}  # fmt: skip
    assert ("train", "--lr") in _float_options()
    assert ("corpus filter", "--lang-score") in _float_options()


@pytest.mark.parametrize("value", HOSTILE)
def test_no_float_option_takes_nan_or_infinity(gpt2, tmp_path: Path, value: str) -> None:
    for command, option in sorted(_float_options()):
        run = gpt2(*_base(command, tmp_path), f"{option}={value}")
        errors = [line for line in run.stderr.splitlines() if ": error: " in line]
        assert run.code == 2, (command, option, value, run.stderr)
        assert len(errors) == 1 and option.lstrip("-").split("-")[0] in errors[0], run.stderr
        assert "Traceback" not in run.stderr


@pytest.mark.parametrize(("command", "args"), EXTRA)
def test_numbers_outside_their_range_are_usage_errors(
    gpt2, tmp_path: Path, command: str, args: list[str]
) -> None:
    run = gpt2(*_base(command, tmp_path), *args)
    assert run.code == 2, run.stderr
    assert len([line for line in run.stderr.splitlines() if line.strip()]) == 1, run.stderr


def test_every_number_rule_has_one_wording_and_refuses_nan() -> None:
    assert require(0.5, "--x", between(0, 1)) == 0.5
    for value, rule, message in [
        (float("nan"), between(0, 1), "--x must be a finite number, not nan"),
        (float("nan"), positive, "--x must be a finite number, not nan"),
        (float("inf"), at_least(1), "--x must be a finite number, not inf"),
        (1.5, between(0.0, 1.0), "--x must be between 0 and 1, not 1.5"),
        (40, between(1, 22), "--x must be between 1 and 22, not 40"),
        (0.0, positive, "--x must be positive, not 0.0"),
        (1.0, in_range(0, 1, high_open=True), "--x must be at least 0 and below 1, not 1.0"),
        (True, at_least(0), "--x must be a finite number, not True"),
    ]:
        with pytest.raises(UsageError) as caught:
            require(value, "--x", rule)
        assert str(caught.value) == message


@pytest.mark.parametrize("text", ["lr: .nan", "weight_decay: .inf", "grad_clip: -.inf",
                                  "lr: 1e400"])  # fmt: skip
def test_a_config_file_value_is_checked_as_its_flag_is(gpt2, tmp_path: Path, text: str) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(f"{text}\nsize: tiny\n")
    run = gpt2(*_base("train", tmp_path), "--config", config)
    assert run.code == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"{config}: {text.split(':')[0]} must be a finite number" in lines[0]
