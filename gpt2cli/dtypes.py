"""The ``--dtype`` vocabulary of every command: fp32, bf16, fp16, their long names, and auto;
int8 (weight-only 8-bit, CPU inference: sample, score, eval) where a command allows it."""

from __future__ import annotations

from gpt2cli.errors import UsageError

# Any spelling -> the torch attribute name (``torch.bfloat16``); "half" kept for old scripts.
_NAMES = {
    "auto": "auto",
    "fp32": "float32",
    "float32": "float32",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
}


def canonical(name: str, int8: bool = False) -> str:
    """``auto``, ``float32``, ``bfloat16`` or ``float16`` for any of their names (any case);
    ``int8`` too where ``int8`` allows it (inference on a CPU)."""
    key = str(name).strip().lower()
    if int8 and key in ("int8", "i8", "q8"):
        return "int8"
    found = _NAMES.get(key)
    if found is None:
        extra = ", int8" if int8 else ""
        raise UsageError(
            f"unknown dtype {name!r}",
            f"use fp32, bf16, fp16 (float32, bfloat16, float16){extra} or auto",
        )
    return found
