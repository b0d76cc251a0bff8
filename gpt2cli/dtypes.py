"""The ``--dtype`` vocabulary of every command: fp32, bf16, fp16, their long names, and auto."""

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


def canonical(name: str) -> str:
    """``auto``, ``float32``, ``bfloat16`` or ``float16`` for any of their names (any case)."""
    found = _NAMES.get(str(name).strip().lower())
    if found is None:
        raise UsageError(
            f"unknown dtype {name!r}", "use fp32, bf16, fp16 (float32, bfloat16, float16) or auto"
        )
    return found
