"""`gpt2 train` options: defaults, YAML config files, CLI overrides and checks.

One dataclass holds every option: each field is its YAML key and (through :func:`flags`) its
command-line flag, type, default and --help text. Precedence: built-in defaults < ``--config``
YAML < command-line flags. The effective config is written to ``RUN/config.yaml`` and is the
base again when a run is resumed; options that define the run (model, data, batch, optimizer,
schedule, seed) may not change on resume.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from gpt2cli import dtypes
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


def option(
    default: Any,
    help: str = "",
    *short: str,
    long: str | None = None,
    path: bool = False,
    cli: bool = True,
) -> Any:
    """A TrainConfig field that is also a ``gpt2 train`` flag: ``help`` is its --help text
    (``{default}`` there becomes ``[default: VALUE]``), ``short`` its one-letter names,
    ``long`` its long name when not the field's (``--a/--b`` for a boolean pair), ``path``
    a PATH value. ``cli=False``: a YAML key only."""
    return field(
        default=default,
        metadata={"help": help, "short": short, "long": long, "path": path, "cli": cli},
    )


@dataclass
class TrainConfig:
    """Every `gpt2 train` option: its YAML key, flag, type, default and --help text."""

    data: str | None = option(
        None,
        "Pack directory (from `gpt2 pack`): its train split is trained on, its val split "
        "validated on.",
        "-d",
    )
    out: str | None = option(
        None,
        "Run directory: config.yaml, metrics.jsonl, loss.png, checkpoints/, final/.",
        "-o",
        long="--output",
        path=True,
    )
    size: str | None = option(  # None: 124m, or the --init-from weights' shape
        None,
        "Model size: 124m/117m/small/gpt2, 355m/345m/medium, 774m/762m/large, "
        "1.5b/1558m/1542m/xl, tiny, mini. Default 124m, or the shape of --init-from.",
        "-s",
    )
    # YAML only: GPTConfig fields (n_layer, n_head, n_embd, dropout...) over the size's shape.
    model: dict[str, Any] | None = option(None, cli=False)
    init_from: str | None = option(
        None,
        "Start from these weights (fine-tuning): a run directory, a checkpoint, an HF-layout "
        "directory or an HF model name in the local cache.",
    )
    max_steps: int | None = option(
        None,
        "Optimizer steps to train. Default: from --max-tokens, else one pass over the train split.",
    )
    max_tokens: int | None = option(
        None, "Tokens to train on (rounded up to whole steps of --batch-size x --seq-len)."
    )
    batch_size: int = option(
        512, "Sequences per optimizer step over all processes {default}.", "-b"
    )
    micro_batch: int | str = option(
        "auto",
        "Sequences per forward pass and process; steps accumulate gradients over batch-size / "
        "(processes x micro-batch) of them. 'auto' [default]: the largest power of two that "
        f"fits the GPU (tried); {CPU_MICRO_BATCH} on CPU.",
    )
    seq_len: int = option(1024, "Tokens per sequence {default}.")
    lr: float | None = option(
        None,
        "Peak learning rate. Default by size (GPT-3 table): 6e-4 up to 124M, 3e-4 355M, "
        "2.5e-4 774M, 2e-4 1.5B.",
    )
    min_lr_ratio: float = option(0.1, cli=False)  # the cosine decay ends at lr x this
    warmup: int | None = option(
        None,
        "Linear warmup steps, then cosine decay to 10% of --lr. Default: "
        f"{WARMUP_TOKENS // 10**6}M tokens (GPT-3), at most a tenth of the run.",
    )
    weight_decay: float = option(
        0.1, "AdamW weight decay on matrices (not biases, LayerNorms) {default}."
    )
    beta1: float = option(0.9, cli=False)
    beta2: float = option(0.95, cli=False)
    eps: float = option(1e-8, cli=False)
    grad_clip: float = option(1.0, "Clip the gradient norm to this (0: off) {default}.")
    skip_loss_z: float = option(
        0.0,
        "Skip the update of a step whose loss is more than this many standard deviations above "
        "the mean of the last --skip-window steps (0: off) {default}.",
    )
    skip_grad_z: float = option(
        0.0, "The same for the gradient norm (before clipping; 0: off) {default}."
    )
    skip_window: int = option(
        100,
        "Steps in the moving window of --skip-loss-z / --skip-grad-z (skipped ones do not "
        "count); the guard acts once it is full {default}.",
    )
    max_skips: int = option(
        10, "Stop when this many updates in a row were skipped as spikes {default}."
    )
    seed: int = option(0, "Seed of the initialisation and the data order {default}.")
    device: str = option("auto", "auto [default: CUDA if available], cpu, cuda or cuda:N.")
    dtype: str = option(
        "auto",
        "Compute precision: auto [default: bf16 autocast on CUDA (fp16 + loss scaling without "
        "bf16), fp32 on CPU], fp32, bf16 or fp16 (or float32, bfloat16, float16).",
    )
    compile: bool | None = option(
        None,
        "torch.compile the model [default: on with CUDA, off on CPU].",
        long="--compile/--no-compile",
    )
    recompute: bool = option(
        False,
        "Activation recompute: keep only each transformer block's input and recompute its "
        "activations in the backward pass: less memory (a larger --micro-batch, also for "
        "'auto'), about a third more compute.",
        long="--recompute/--no-recompute",
    )
    fsdp: bool = option(
        False,
        "Under torchrun: shard parameters, gradients and optimizer state (FSDP) instead of "
        "replicating them (DDP, the default).",
        long="--fsdp/--ddp",
    )
    eval_every: int = option(
        250,
        "Validate on the val split before the first step, every this many steps and at the end "
        "{default}.",
    )
    eval_steps: int = option(20, "Micro-batches per validation {default}.")
    eval_task: list[str] | None = option(
        None,
        "Also run this `gpt2 eval` task (hellaswag, lambada, wikitext2...) at each validation, "
        "on local data (repeatable).",
    )
    eval_task_limit: int | None = option(
        None, "Examples (documents) per --eval-task, the first ones. Default: all."
    )
    eval_task_data: str | None = option(
        None,
        "Directory holding the --eval-task data files under their published names. Default: "
        "the `gpt2 eval` cache (~/.cache/gpt2cli).",
        path=True,
    )
    save_every: int = option(1000, "Write a checkpoint every this many steps {default}.")
    keep: int = option(3, "Checkpoints to keep (the newest) {default}; final/ is always kept.")
    log_every: int = option(
        10,
        "When stderr is not a terminal: a progress line every this many steps {default}.",
    )
    tensorboard: bool = option(
        False,
        "Log the metrics and the config to TensorBoard event files in RUN/tensorboard/ "
        "(pip install 'gpt2cli[track]').",
        long="--tensorboard/--no-tensorboard",
    )
    wandb: str | None = option(
        None,
        "Log the metrics and the config to this Weights & Biases project; WANDB_MODE=offline "
        "needs no login nor network (pip install 'gpt2cli[track]').",
    )
    pad_vocab: int = option(
        64,
        "Pad the embedding rows to a multiple of this for speed; outputs do not change (1: no "
        "padding) {default}.",
    )
    peak_tflops: float | None = option(
        None, "Peak TFLOP/s of one GPU for MFU, when the built-in table does not know it."
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self, runtime: dict[str, Any] | None = None) -> str:
        data = self.to_dict()
        if runtime:
            data["runtime"] = runtime
        header = "# gpt2 train: effective configuration (CLI flags > --config file > defaults)\n"
        return header + yaml.safe_dump(data, sort_keys=False)


def _kind(hint: Any) -> Any:
    """The value type an annotation asks for: int, float, bool, str, dict, or (int, str)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = tuple(a for a in typing.get_args(hint) if a is not type(None))
        return _kind(args[0]) if len(args) == 1 else args
    return typing.get_origin(hint) or hint


_HINTS = typing.get_type_hints(TrainConfig)
KINDS: dict[str, Any] = {f.name: _kind(_HINTS[f.name]) for f in fields(TrainConfig)}
OPTION_NAMES = list(KINDS)
_KIND_TEXT = {
    int: "an integer",
    float: "a number",
    bool: "true or false",
    str: "a string",
    dict: "a mapping",
    list: "a list of strings",
    (int, str): "an integer or 'auto'",
}


@dataclass(frozen=True)
class Flag:
    """One command-line option of `gpt2 train`, as a CLI library needs it."""

    name: str  # the TrainConfig field
    names: tuple[str, ...]  # "--batch-size", "-b"
    type: type  # what the flag's value is parsed as
    help: str


def flags() -> list[Flag]:
    """The command-line options, in TrainConfig's order (that of --help)."""
    out = []
    for f in fields(TrainConfig):
        meta = f.metadata
        if not meta["cli"]:
            continue
        kind = KINDS[f.name]
        value_type = Path if meta["path"] else str if isinstance(kind, tuple) else kind
        if kind is list:
            value_type = list[str]
        text = meta["help"].replace("{default}", f"[default: {f.default}]")
        out.append(Flag(f.name, (meta["long"] or flag(f.name), *meta["short"]), value_type, text))
    return out


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _coerce(name: str, value: Any, source: str | None = None) -> Any:
    """Check one option's type (``source``: the YAML file; None: the flag). YAML and flags
    both come through here."""
    if value is None:
        return None
    kind = KINDS[name]
    try:
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            if isinstance(value, str):
                value = float(value) if any(c in value for c in ".eE") else int(value)
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):  # nan passes every range check and trains to nan
                what = f"{source}: {name}" if source else flag(name)
                raise UsageError(f"{what} must be a finite number, not {value!r}")
            return number
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError
            return value
        if kind is str:
            return dtypes.canonical(value) if name == "dtype" else str(value)
        if kind == (int, str):
            if isinstance(value, str) and value.strip().lower() == "auto":
                return "auto"
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind is dict:
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
        if kind is list:
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
                raise ValueError
            return list(values)
    except (TypeError, ValueError):
        what = f"{source}: {name}" if source else flag(name)
        raise UsageError(f"{what} must be {_KIND_TEXT[kind]}, not {value!r}") from None
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
            merged[name] = _coerce(name, value)
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
        "max_skips",
        "eval_task_limit",
    ):
        positive(name)
    for name in ("skip_loss_z", "skip_grad_z"):
        if getattr(config, name) < 0:
            raise UsageError(f"{flag(name)} must be 0 (off) or more, not {getattr(config, name)}")
    if config.skip_window < 2:
        raise UsageError(f"--skip-window must be at least 2, not {config.skip_window}")
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
    device = config.device.split(":")[0]
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, not {config.device!r}")


def check_resume(saved: dict[str, Any], given: dict[str, Any], run_dir: str) -> None:
    """Refuse a flag that would change what the resumed run is."""
    for name in RUN_DEFINING:
        value = given.get(name)
        if value is None:
            continue
        value = _coerce(name, value)
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
