"""`gpt2 train` options: defaults, YAML config files, CLI overrides and checks.

One dataclass holds every option. Precedence: built-in defaults < ``--config`` YAML <
command-line flags. The effective config is written to ``RUN/config.yaml`` and is the
base again when a run is resumed; options that define the run (model, data, batch,
optimizer, schedule, seed) may not change on resume.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from gpt2cli.errors import UsageError

# GPT-3 paper, table 2.1: learning rate by model size (parameters), used when --lr is not set.
LR_BY_PARAMS: list[tuple[float, float]] = [
    (125e6 * 1.2, 6e-4),  # GPT-2 124M / GPT-3 Small
    (350e6 * 1.2, 3e-4),  # GPT-2 355M / GPT-3 Medium
    (760e6 * 1.2, 2.5e-4),  # GPT-2 774M / GPT-3 Large
    (math.inf, 2e-4),  # GPT-2 1.5B / GPT-3 XL
]
WARMUP_TOKENS = 375_000_000  # GPT-3: linear warmup over the first 375M tokens
CPU_MICRO_BATCH = 8  # --micro-batch auto on CPU (no memory probe there)

# Options that define the run: a resumed run must keep them.
RUN_DEFINING = (
    "size",
    "model",
    "data",
    "seq_len",
    "batch_size",
    "lr",
    "min_lr_ratio",
    "warmup",
    "weight_decay",
    "beta1",
    "beta2",
    "eps",
    "grad_clip",
    "seed",
    "pad_vocab",
    "init_from",
)
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class TrainConfig:
    out: str | None = None
    data: str | None = None
    size: str | None = None  # None: 124m, or the --init-from weights' shape
    model: dict[str, Any] | None = None
    init_from: str | None = None
    seq_len: int = 1024
    batch_size: int = 512
    micro_batch: int | str = "auto"
    max_steps: int | None = None
    max_tokens: int | None = None
    lr: float | None = None
    min_lr_ratio: float = 0.1
    warmup: int | None = None
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    compile: bool | None = None
    fsdp: bool = False
    eval_every: int = 250
    eval_steps: int = 20
    save_every: int = 1000
    keep: int = 3
    log_every: int = 10
    pad_vocab: int = 64
    peak_tflops: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        return data

    def to_yaml(self, runtime: dict[str, Any] | None = None) -> str:
        data = self.to_dict()
        if runtime:
            data["runtime"] = runtime
        header = "# gpt2 train: effective configuration (CLI flags > --config file > defaults)\n"
        return header + yaml.safe_dump(data, sort_keys=False)


OPTION_NAMES = [f.name for f in fields(TrainConfig) if f.name != "extra"]
_INT = (
    "seq_len",
    "batch_size",
    "max_steps",
    "max_tokens",
    "warmup",
    "seed",
    "eval_every",
    "eval_steps",
    "save_every",
    "keep",
    "log_every",
    "pad_vocab",
)
_FLOAT = ("lr", "min_lr_ratio", "weight_decay", "beta1", "beta2", "eps", "grad_clip", "peak_tflops")
_BOOL = ("compile", "fsdp")
_STR = ("out", "data", "size", "init_from", "device", "dtype")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _coerce(name: str, value: Any, source: str) -> Any:
    """Check one option's type; YAML and CLI both come through here."""
    if value is None:
        return None
    try:
        if name in _INT:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            if isinstance(value, str):
                value = float(value) if any(c in value for c in ".eE") else int(value)
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
            return int(value)
        if name in _FLOAT:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if name in _BOOL:
            if not isinstance(value, bool):
                raise ValueError
            return value
        if name in _STR:
            return str(value)
        if name == "micro_batch":
            if isinstance(value, str) and value.strip().lower() == "auto":
                return "auto"
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if name == "model":
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
    except (TypeError, ValueError):
        kind = (
            "an integer"
            if name in _INT
            else "a number"
            if name in _FLOAT
            else "true or false"
            if name in _BOOL
            else "an integer or 'auto'"
            if name == "micro_batch"
            else "a mapping"
            if name == "model"
            else "a string"
        )
        raise UsageError(f"{source}: {name} must be {kind}, not {value!r}") from None
    return value


def load_runtime(path: str | Path) -> dict[str, Any]:
    """The ``runtime`` section (resolved device, batch split, model shape) of a config.yaml."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    runtime = data.get("runtime") if isinstance(data, dict) else None
    return runtime if isinstance(runtime, dict) else {}


# A YAML key may also be spelled as its command-line flag's long name.
_YAML_ALIASES = {"output": "out"}


def load_yaml(path: str | Path, source: str | None = None) -> dict[str, Any]:
    """Read a run.yaml: a mapping of option names (dashes or underscores) to values."""
    source = source or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{source}: no such config file") from None
    except OSError as error:
        raise UsageError(f"{source}: cannot read config ({error.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        line = getattr(getattr(error, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise UsageError(f"{source}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{source}: expected a mapping of option names to values")
    data.pop("runtime", None)
    result: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        name = _YAML_ALIASES.get(name, name)
        if name not in OPTION_NAMES:
            raise UsageError(
                f"{source}: unknown option {key!r}", "see `gpt2 train --help` for the option names"
            )
        result[name] = _coerce(name, value, source)
    return result


def build(overrides: dict[str, Any], base: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then ``base`` (a YAML file's options), then ``overrides`` (flags given)."""
    merged: dict[str, Any] = {}
    merged.update(base or {})
    for name, value in overrides.items():
        if value is not None:
            merged[name] = _coerce(name, value, flag(name))
    config = TrainConfig(**merged)
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    def positive(name: str, allow_none: bool = True) -> None:
        value = getattr(config, name)
        if value is None and allow_none:
            return
        if value is None or value <= 0:
            raise UsageError(f"{flag(name)} must be positive, not {value}")

    for name in (
        "seq_len",
        "batch_size",
        "max_steps",
        "max_tokens",
        "eval_every",
        "eval_steps",
        "save_every",
        "keep",
        "log_every",
        "lr",
        "peak_tflops",
        "pad_vocab",
    ):
        positive(name)
    if isinstance(config.micro_batch, int) and config.micro_batch <= 0:
        raise UsageError(f"--micro-batch must be positive or 'auto', not {config.micro_batch}")
    if isinstance(config.micro_batch, int) and config.micro_batch > config.batch_size:
        raise UsageError(
            f"--micro-batch {config.micro_batch} is larger than --batch-size {config.batch_size}"
        )
    if config.warmup is not None and config.warmup < 0:
        raise UsageError(f"--warmup must be 0 or more, not {config.warmup}")
    if not 0 <= config.min_lr_ratio <= 1:
        raise UsageError("min_lr_ratio must be between 0 and 1")
    if config.weight_decay < 0 or config.grad_clip < 0 or config.eps <= 0:
        raise UsageError("weight_decay and grad_clip must be >= 0 and eps > 0")
    if not (0 <= config.beta1 < 1 and 0 <= config.beta2 < 1):
        raise UsageError("beta1 and beta2 must be in [0, 1)")
    if config.dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, not {config.dtype!r}")
    device = config.device.split(":")[0]
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, not {config.device!r}")


def check_resume(saved: dict[str, Any], given: dict[str, Any], run_dir: str) -> None:
    """Refuse a flag that would change what the resumed run is."""
    for name in RUN_DEFINING:
        value = given.get(name)
        if value is None:
            continue
        value = _coerce(name, value, flag(name))
        if name in ("data", "init_from") and saved.get(name) is not None:
            same = Path(str(value)).resolve() == Path(str(saved[name])).resolve()
        else:
            same = value == saved.get(name)
        if not same:
            raise UsageError(
                f"{run_dir} was trained with {flag(name)} {saved.get(name)}, not {value}",
                "drop the flag to resume that run, or start a new run with another -o",
            )


def default_lr(num_params: int) -> float:
    for limit, lr in LR_BY_PARAMS:
        if num_params <= limit:
            return lr
    return LR_BY_PARAMS[-1][1]


def default_warmup(tokens_per_step: int, total_steps: int) -> int:
    """GPT-3's 375M warmup tokens, but at most a tenth of a short run."""
    steps = math.ceil(WARMUP_TOKENS / tokens_per_step)
    return max(0, min(steps, total_steps // 10))


def total_steps(config: TrainConfig, train_tokens: int) -> int:
    """--max-steps, else --max-tokens, else one pass over the train split."""
    tokens_per_step = config.batch_size * config.seq_len
    if config.max_steps is not None:
        return config.max_steps
    if config.max_tokens is not None:
        return max(1, math.ceil(config.max_tokens / tokens_per_step))
    return max(1, train_tokens // tokens_per_step)
