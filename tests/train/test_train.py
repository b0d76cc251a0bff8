"""`gpt2 train`: config, schedule, checkpoints, exact resume, kill -9 mid-save, bad input."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _train_runs import ENV, Crash, make_shards, options, train_losses  # tests/ is on sys.path

from gpt2cli import option_fields, run_layout
from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.model.gpt import GPT, config_for_size
from gpt2cli.train import checkpoint, hardware, metrics_log, mfu, optimizer, setup
from gpt2cli.train import config as trainconfig

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shards(tmp_path_factory.mktemp("train") / "shards")


# --- pieces ---------------------------------------------------------------------------------


def test_schedule_warms_up_linearly_then_decays_to_a_tenth() -> None:
    lrs = [optimizer.lr_at(s, 6e-4, 10, 100, 0.1) for s in range(101)]
    assert lrs[0] == pytest.approx(6e-5) and lrs[9] == pytest.approx(6e-4)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[100] == pytest.approx(6e-5)
    assert optimizer.lr_at(55, 6e-4, 10, 100, 0.1) == pytest.approx(0.5 * (6e-4 + 6e-5))
    assert optimizer.lr_at(0, 1.0, 0, 10, 0.1) == 1.0


def test_weight_decay_on_matrices_only() -> None:
    model = GPT(config_for_size("tiny"))
    decay, no_decay = optimizer.param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"]) and all(
        p.dim() == 1 for p in no_decay["params"]
    )
    ids = [id(p) for p in decay["params"] + no_decay["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))  # tied head once
    assert any(p is model.transformer.wte.weight for p in decay["params"])


def test_defaults_from_the_gpt3_table() -> None:
    assert trainconfig.default_lr(124_000_000) == 6e-4
    assert trainconfig.default_lr(355_000_000) == 3e-4
    assert trainconfig.default_lr(774_000_000) == 2.5e-4
    assert trainconfig.default_lr(1_558_000_000) == 2e-4
    assert trainconfig.default_warmup(512 * 1024, 100_000) == 716  # 375M tokens
    assert trainconfig.default_warmup(512 * 1024, 200) == 20  # a tenth of a short run
    c = trainconfig.TrainConfig()
    assert (
        c.seq_len,
        c.batch_size,
        c.beta1,
        c.beta2,
        c.weight_decay,
        c.grad_clip,
        c.min_lr_ratio,
        c.keep,
    ) == (1024, 512, 0.9, 0.95, 0.1, 1.0, 0.1, 3)


def test_precision_selection() -> None:
    cpu = hardware.choose_precision("cpu", "auto", False)
    assert cpu.autocast_dtype is None and not cpu.grad_scaler
    assert hardware.choose_precision("cuda", "auto", True).autocast_dtype == torch.bfloat16
    fp16 = hardware.choose_precision("cuda", "auto", False)
    assert fp16.autocast_dtype == torch.float16 and fp16.grad_scaler
    assert hardware.choose_precision("cuda", "float32", True).autocast_dtype is None
    with pytest.raises(UsageError):
        hardware.choose_precision("cpu", "float16", False)
    with hardware.choose_precision("cpu", "bfloat16", False).autocast():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_micro_batch_candidates_and_mfu() -> None:
    assert hardware.micro_batch_candidates(512, 64) == [64, 32, 16, 8, 4, 2, 1]
    assert hardware.micro_batch_candidates(24) == [8, 4, 2, 1]
    from gpt2cli.train.distributed import DistEnv

    cpu = hardware.choose_precision("cpu", "auto", False)
    for batch, world, expected in ((512, 1, 8), (12, 1, 4), (512, 2, 8), (6, 2, 1)):
        config = trainconfig.build({"batch_size": batch})
        assert hardware.choose_micro_batch(config, None, DistEnv(world_size=world), cpu) == expected
    with pytest.raises(UsageError, match="does not split over 3"):
        hardware.choose_micro_batch(
            trainconfig.build({"batch_size": 8}), None, DistEnv(world_size=3), cpu
        )
    assert trainconfig.total_steps(trainconfig.build({"max_tokens": 10**6}), 0) == 2
    assert trainconfig.total_steps(trainconfig.build({"batch_size": 2, "seq_len": 8}), 100) == 6
    assert mfu.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert mfu.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert mfu.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert mfu.peak_tflops("NVIDIA L4") == 121.0
    assert mfu.peak_tflops("Some CPU") is None
    with torch.device("meta"):
        model = GPT(config_for_size("124m"))
    fpt = model.flops_per_token(1024)
    # 124M at 150k tok/s on one H100: (6 x 124M + 12 L d T) x 150k / 989e12
    value = mfu.mfu(150_000, fpt, 989.0)
    assert value == pytest.approx(150_000 * fpt / 989e12) and 0.12 < value < 0.14
    assert mfu.mfu(150_000, fpt, 989.0, devices=2) == pytest.approx(value / 2)
    assert mfu.mfu(1.0, fpt, None) is None


def test_config_precedence_and_yaml_checks(tmp_path: Path) -> None:
    file = tmp_path / "run.yaml"
    file.write_text("max-steps: 7\nseq_len: 64\nmicro_batch: auto\nmodel: {n_layer: 3}\n")
    base = trainconfig.load_yaml(file)
    config = trainconfig.build({"seq_len": 32, "lr": None}, base=base)
    assert (config.max_steps, config.seq_len, config.micro_batch) == (7, 32, "auto")
    assert config.model == {"n_layer": 3}
    file.write_text("max_step: 7\n")
    with pytest.raises(UsageError, match="unknown option 'max_step'"):
        trainconfig.load_yaml(file)
    file.write_text("seq_len: [1]\n")
    with pytest.raises(UsageError, match="seq_len must be an integer"):
        trainconfig.load_yaml(file)
    with pytest.raises(UsageError, match="--micro-batch 16 is larger"):
        trainconfig.build({"micro_batch": 16, "batch_size": 8})
    saved = tmp_path / "config.yaml"
    saved.write_text(config.to_yaml({"device": "cpu"}))
    assert trainconfig.build({}, base=trainconfig.load_yaml(saved)) == config


def test_every_command_takes_the_same_dtype_names(tmp_path: Path) -> None:
    from gpt2cli.model import resolve

    cpu = torch.device("cpu")
    for short, long in (("fp32", "float32"), ("bf16", "bfloat16"), ("fp16", "float16")):
        assert trainconfig.build({"dtype": short}).dtype == long
        assert trainconfig.build({"dtype": long.upper()}).dtype == long
        assert resolve.resolve_dtype(short, cpu) == resolve.resolve_dtype(long, cpu)
        assert resolve.resolve_dtype(long, cpu) == getattr(torch, long)
    file = tmp_path / "run.yaml"
    file.write_text("dtype: bf16\n")
    assert trainconfig.build({}, base=trainconfig.load_yaml(file)).dtype == "bfloat16"
    for bad in ("fp8", "int8"):
        with pytest.raises(UsageError, match=f"unknown dtype '{bad}'"):
            trainconfig.build({"dtype": bad})
    with pytest.raises(UsageError, match="unknown dtype 'fp8'"):
        resolve.resolve_dtype("fp8", cpu)
    assert resolve.resolve_dtype("int8", cpu) == torch.int8  # inference on a CPU only


def test_flags_and_their_help_come_from_the_config_fields(gpt2) -> None:
    text = " ".join(gpt2("train", "--help").stdout.decode().split())
    defaults = trainconfig.TrainConfig()
    flags = option_fields.flags(trainconfig.TrainConfig)
    for flag in flags:
        assert flag.names[0].split("/")[0] in text, flag
    for name in ("batch_size", "seq_len", "weight_decay", "grad_clip", "keep", "pad_vocab"):
        help_text = next(f.help for f in flags if f.name == name)
        assert f"[default: {getattr(defaults, name)}]" in help_text
    assert (
        "-b, --batch-size <int> Sequences per optimizer step over all processes [default: 512]"
        in text
    )
    assert "-o, --output <path>" in text and "-c, --config <path>" in text
    assert f"context {defaults.seq_len}, {defaults.batch_size} sequences per step" in text
    # Fields that are YAML keys only have no flag.
    assert "--beta1" not in text and "--model" not in text
    assert {f.name for f in flags} < set(trainconfig.OPTION_NAMES)


def test_cli_values_are_checked_like_yaml_values(gpt2, tmp_path: Path) -> None:
    for args, message in (
        (["--dtype", "fp8"], "gpt2 train: error: unknown dtype 'fp8'"),
        (["--micro-batch", "many"], "gpt2 train: error: --micro-batch must be an integer or"),
    ):
        result = gpt2("train", "-o", str(tmp_path / "run"), "--size", "tiny", *args)
        assert result.code == 2, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), lines


def test_checkpoint_completeness_and_pruning(tmp_path: Path) -> None:
    model = GPT(config_for_size("tiny"))
    run = tmp_path / "run"
    for step in (1, 2, 3, 4):
        meta = f"runtime: {{step: {step}}}\n"
        checkpoint.save(
            run / "checkpoints" / run_layout.step_name(step), model, {"format": 1}, meta
        )
    checkpoint.prune(run, 2)
    assert [s for s, _ in run_layout.complete_steps(run)] == [3, 4]
    # A directory without COMPLETE, or with a temporary name, is never taken.
    (run / "checkpoints" / "step-00000009").mkdir()
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()  # a writer that died: its pid is free
    broken = run / "checkpoints" / f"step-00000010.tmp-{gone.pid}"
    broken.mkdir()
    (broken / "COMPLETE").touch()
    assert run_layout.latest_complete(run).name == "step-00000004"
    assert run_layout.latest_resumable(run).name == "step-00000004"
    removed = checkpoint.remove_stale(run)
    assert {p.name for p in removed} == {"step-00000009", broken.name}
    assert not list(run.glob("checkpoints/*.tmp-*"))


# --- runs -----------------------------------------------------------------------------------


def test_a_run_leaves_metrics_plot_checkpoints_and_final(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    final = setup.train(options(data, run, max_steps=6, keep=2, peak_tflops=1.0))
    assert final == run / "final" and run_layout.is_complete(final)
    assert [s for s, _ in run_layout.complete_steps(run)] == [2, 4]  # --keep 2; 6 is final
    for name in ("config.json", "model.safetensors", "training_state.pt", "run.yaml"):
        assert (final / name).is_file()
    records = metrics_log.read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in records if r["kind"] == "val"] == [0, 2, 4, 6]
    train = [r for r in records if r["kind"] == "train"]
    first, last = train[0], train[-1]
    assert last["loss"] < first["loss"] and first["tokens"] == 8 * 32
    # MFU against the given peak (the CUDA path's formula, here with a fake 1 TFLOP/s CPU).
    flops = GPT(config_for_size("tiny")).flops_per_token(32)
    assert last["mfu"] == pytest.approx(last["tokens_per_s"] * flops / 1e12)
    assert "MFU" in metrics_log.status_text(last, 10.0)
    assert (run / "loss.png").read_bytes().startswith(b"\x89PNG")
    saved = trainconfig.load_yaml(run / "config.yaml")
    assert saved["lr"] == 6e-4 and saved["max_steps"] == 6
    assert trainconfig.load_runtime(run / "config.yaml")["grad_accum"] == 2
    # The final model loads like any other (run dir spec).
    from gpt2cli.model import resolve

    loaded = resolve.load_model(str(run))
    assert loaded.config.n_layer == 2


def test_resume_gives_the_same_losses_bit_for_bit(data: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    setup.train(options(data, whole, max_steps=5))
    broken = tmp_path / "broken"

    def crash(step: int) -> None:
        if step == 3:
            raise Crash

    with pytest.raises(Crash):
        setup.train(options(data, broken, max_steps=5), hooks=setup.TrainHooks(crash))
    assert len(train_losses(broken)) == 3
    setup.train({"out": str(broken)}, resume=True)
    assert train_losses(broken) == train_losses(whole)  # exact float equality
    a = torch.load(whole / "final" / "training_state.pt", weights_only=True)
    b = torch.load(broken / "final" / "training_state.pt", weights_only=True)
    assert a["loader"] == b["loader"] and a["step"] == b["step"] == 5
    from safetensors.torch import load_file

    wa, wb = (
        load_file(whole / "final" / "model.safetensors"),
        load_file(broken / "final" / "model.safetensors"),
    )
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_kill_9_during_a_save_leaves_nothing_resume_would_take(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    # A trainer whose save after step 4 stalls once its files but COMPLETE are written.
    script = (
        "import sys, time\n"
        "from gpt2cli.train import setup\n"
        "stall = setup.TrainHooks(mid_save=lambda step: step == 4 and time.sleep(60))\n"
        "setup.train(dict(data=sys.argv[1], out=sys.argv[2], size='tiny', seq_len=32,\n"
        "    batch_size=8, micro_batch=8, max_steps=6, save_every=2, eval_every=100,\n"
        "    device='cpu'), hooks=stall)\n"
    )
    args = [sys.executable, "-c", script, str(data), str(run)]
    child = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    tmp = None
    while time.monotonic() < deadline and child.poll() is None:
        found = list((run / "checkpoints").glob("step-00000004.tmp-*/run.yaml"))
        if found:
            tmp = found[0].parent
            break
        time.sleep(0.2)
    assert tmp is not None, child.stderr.read().decode() if child.poll() is not None else ""
    time.sleep(0.5)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stderr.close()
    assert tmp.exists() and not run_layout.is_complete(tmp)
    assert run_layout.latest_resumable(run).name == "step-00000002"
    assert run_layout.latest_complete(run).name == "step-00000002"
    setup.train({"out": str(run)}, resume=True)
    assert not tmp.exists()
    assert [s for s, _ in run_layout.complete_steps(run)] == [2, 4]
    assert [
        r["step"] for r in metrics_log.read_metrics(run / "metrics.jsonl") if r["kind"] == "train"
    ] == [1, 2, 3, 4, 5, 6]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    data: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"

    def nan_at_3(step: int, loss: torch.Tensor) -> torch.Tensor:
        return loss * float("nan") if step == 3 else loss

    with pytest.raises(
        Gpt2Error,
        match=r"loss became nan at step 3: stopped; last good "
        r"checkpoint: .*step-00000002",
    ):
        setup.train(options(data, run), hooks=setup.TrainHooks(loss=nan_at_3))
    assert run_layout.latest_resumable(run).name == "step-00000002"
    assert not (run / "final").exists()
    assert [
        r["step"] for r in metrics_log.read_metrics(run / "metrics.jsonl") if r["kind"] == "train"
    ] == [1, 2]


def test_a_run_reads_its_pack_directory_once(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpt2cli.data import dataset as dataset_module

    opened: list[Path] = []

    class Counted(dataset_module.ShardDataset):
        def __init__(self, directory: Path, *args: object, **kwargs: object) -> None:
            opened.append(Path(directory))
            super().__init__(directory, *args, **kwargs)

    monkeypatch.setattr(dataset_module, "ShardDataset", Counted)
    run = tmp_path / "run"
    setup.train(options(data, run))  # 3 validations (steps 0, 2, 4)
    assert opened == [data]
    assert [
        r["step"] for r in metrics_log.read_metrics(run / "metrics.jsonl") if r["kind"] == "val"
    ] == [0, 2, 4]


def test_the_val_micro_batch_is_the_largest_the_val_split_fills(tmp_path: Path) -> None:
    from gpt2cli.data.dataset import ShardDataset
    from gpt2cli.train.distributed import DistEnv

    pack = make_shards(tmp_path / "small_val", documents=60, val_tokens=32 * 5 + 1)
    dataset = ShardDataset(pack)
    config = trainconfig.build({"data": str(pack), "seq_len": 32})
    windows = (dataset.num_tokens("val") - 1) // 32
    assert 5 <= windows < 8
    assert setup.val_micro_batch(dataset, config, 16, DistEnv()) == 4
    assert setup.val_micro_batch(dataset, config, 3, DistEnv()) == 3
    assert setup.val_micro_batch(dataset, config, 16, DistEnv(world_size=2)) == 2
    assert setup.val_micro_batch(dataset, config, 16, DistEnv(world_size=8)) is None


def test_yaml_config_with_cli_override_and_custom_shape(data: Path, tmp_path: Path) -> None:
    file = tmp_path / "run.yaml"
    run = tmp_path / "run"
    file.write_text(
        f"data: {data}\nout: {run}\nseq_len: 16\nbatch_size: 4\nmax_steps: 9\n"
        "model: {n_layer: 1, n_head: 2, n_embd: 32}\npad_vocab: 1\n"
        "device: cpu\neval_every: 100\n"
    )
    setup.train({"max_steps": 2, "micro_batch": 2}, config_file=str(file))
    runtime = trainconfig.load_runtime(run / "config.yaml")
    assert runtime["model"]["n_layer"] == 1 and runtime["model"]["padded_vocab_size"] is None
    assert runtime["grad_accum"] == 2 and len(train_losses(run)) == 2


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "empty",
        "corrupt",
        "too_long",
        "unknown_size",
        "fsdp",
        "no_run",
        "other_size",
        "foreign",
        "occupied",
        "micro",
    ],
)
def test_bad_input_is_one_clear_error(case: str, data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    kwargs = options(data, run)
    resume = False
    expected: tuple[type, str]
    if case == "missing":
        kwargs["data"] = str(tmp_path / "nope")
        expected = (Gpt2Error, "no such directory")
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        kwargs["data"] = str(tmp_path / "empty")
        expected = (Gpt2Error, "not a pack directory")
    elif case == "corrupt":
        broken = make_shards(tmp_path / "broken", documents=20, val_tokens=0)
        shard = next(broken.glob("*.shard"))
        shard.write_bytes(shard.read_bytes()[:-5])
        kwargs["data"] = str(broken)
        expected = (Gpt2Error, "truncated")
    elif case == "too_long":
        kwargs.update(seq_len=100_000)
        expected = (Gpt2Error, "fewer than one sequence")
    elif case == "unknown_size":
        kwargs.update(size="huge")
        expected = (UsageError, "unknown model size 'huge'")
    elif case == "fsdp":
        kwargs.update(fsdp=True)
        expected = (UsageError, "--fsdp needs a distributed launch")
    elif case == "no_run":
        kwargs, resume = {"out": str(run)}, True
        expected = (Gpt2Error, "holds no run")
    elif case == "other_size":
        setup.train(options(data, run, max_steps=2, eval_every=100))
        kwargs, resume = {"out": str(run), "size": "mini"}, True
        expected = (UsageError, "trained with --size tiny, not mini")
    elif case == "foreign":
        # (a config.json that does not match its own weights is a damaged checkpoint instead)
        setup.train(options(data, run, max_steps=2, eval_every=100))
        run_config = run / "config.yaml"
        run_config.write_text(run_config.read_text().replace("n_layer: 2", "n_layer: 3"))
        kwargs, resume = {"out": str(run), "max_steps": 3}, True
        expected = (UsageError, "checkpoint is a 2 layers.* model, the run's config gives 3 lay")
    elif case == "occupied":  # a run with a loadable checkpoint (without one: taken over)
        setup.train(options(data, run, max_steps=2, eval_every=100))
        saved = (run / "config.yaml").read_text()
        expected = (UsageError, "already holds a run")
    else:
        kwargs.update(micro_batch=3)
        expected = (UsageError, "does not divide")
    with pytest.raises(expected[0], match=expected[1]):
        setup.train(kwargs, resume=resume)
    if case == "occupied":
        assert (run / "config.yaml").read_text() == saved  # nothing lost


def test_init_from_weights_of_another_size_and_fine_tuning(data: Path, tmp_path: Path) -> None:
    base = tmp_path / "base"
    setup.train(options(data, base, max_steps=2, eval_every=100))
    with pytest.raises(UsageError, match="not --size mini"):
        setup.train(options(data, tmp_path / "x", size="mini", init_from=str(base)))
    tuned = tmp_path / "tuned"
    setup.train(
        options(data, tuned, size=None, init_from=str(base / "final"), max_steps=1, eval_every=100)
    )
    first = train_losses(tuned)[0]
    assert first < train_losses(base)[0]  # starts from the trained weights, not from scratch


def test_cli_errors_are_one_line_with_exit_status(data: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpt2cli",
            "train",
            "--data",
            str(tmp_path / "nope"),
            "-o",
            str(tmp_path / "run"),
            "--size",
            "tiny",
            "--fsdp",
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "gpt2 train: error: --fsdp needs a distributed launch (run it under "
        "torchrun, e.g. torchrun --nproc_per_node 8 -m gpt2cli train --fsdp ...)"
    ]
