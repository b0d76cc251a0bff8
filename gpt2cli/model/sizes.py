"""The GPT-2 sizes by name: one table, from which ``config_for_size``, the ``--size`` help and
the Hugging Face Hub names are derived. No torch here, so that ``--help`` can read it."""

from __future__ import annotations

# Each size's names, its own first; for a released size, the Hugging Face model name last.
SIZE_NAMES: dict[str, tuple[str, ...]] = {
    "124m": ("124m", "117m", "small", "gpt2"),
    "355m": ("355m", "345m", "medium", "gpt2-medium"),
    "774m": ("774m", "762m", "large", "gpt2-large"),
    "1.5b": ("1.5b", "1558m", "1542m", "xl", "gpt2-xl"),
    "tiny": ("tiny",),
    "mini": ("mini",),
}
RELEASED = ("124m", "355m", "774m", "1.5b")

SIZE_ALIASES: dict[str, str] = {name: size for size, names in SIZE_NAMES.items() for name in names}

# As the help and the error messages list them: "124m/117m/small/gpt2, 355m/..., mini".
SIZE_LIST = ", ".join("/".join(names) for names in SIZE_NAMES.values())

# The released checkpoints' short names -> their repository on the Hugging Face Hub.
HUB_NAMES: dict[str, str] = {
    **{SIZE_NAMES[size][-1]: f"openai-community/{SIZE_NAMES[size][-1]}" for size in RELEASED},
    "distilgpt2": "distilbert/distilgpt2",
}
