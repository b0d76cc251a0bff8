"""`gpt2 train` extras: TensorBoard / W&B tracking, --eval-task benchmarks while training (2
gloo ranks: in test_distributed) and the loss-spike guard (a planted spike skipped, resumed bit
for bit, --max-skips stopping the run)."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import pytest
import torch
from _train_runs import Crash, make_shards, options, write_task_data  # tests/ is on sys.path

from gpt2cli import run_layout
from gpt2cli.errors import Gpt2Error
from gpt2cli.train import metrics_log, setup
from gpt2cli.train.spike_guard import SpikeGuard, z_score

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shards(tmp_path_factory.mktemp("tracking") / "shards")


# Smaller steps than test_train's: 64 tokens, one micro-batch, one val micro-batch.
FAST = dict(seq_len=16, batch_size=4, micro_batch=4, eval_steps=1)


def fast(data: Path, run: Path, **extra: object) -> dict:
    return options(data, run, **{**FAST, **extra})


def records(run: Path, kind: str) -> list[dict]:
    return [r for r in metrics_log.read_metrics(run / "metrics.jsonl") if r["kind"] == kind]


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in records(run, "train")]


def crash_after(step: int):
    def hook(done: int) -> None:
        if done == step:
            raise Crash

    return hook


# --- TensorBoard / W&B ----------------------------------------------------------------------


def test_tensorboard_scalars_read_back_and_resume_without_duplicates(data: Path, tmp_path: Path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    given = fast(data, run, max_steps=4, save_every=2, tensorboard=True)
    with pytest.raises(Crash):  # step 3 logged, then lost: the resume starts from step 2
        setup.train(given, hooks=setup.TrainHooks(after_step=crash_after(3)))
    setup.train({"out": str(run)}, resume=True)  # --tensorboard carries over in config.yaml

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    train = events.Scalars("train/loss")
    assert [e.step for e in train] == [1, 2, 3, 4]  # 3 once: purged, then logged again
    assert [e.value for e in train] == pytest.approx(losses(run), rel=1e-6)
    val = events.Scalars("val/loss")
    assert [e.step for e in val] == [0, 2, 4]
    assert [e.value for e in val] == pytest.approx([r["loss"] for r in records(run, "val")])
    assert {"train/lr", "train/grad_norm", "train/tokens_per_s"} <= set(events.Tags()["scalars"])
    assert "config/text_summary" in events.Tags()["tensors"]


def test_wandb_offline_needs_no_login(data: Path, tmp_path: Path, gpt2, monkeypatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", "")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    run = tmp_path / "run"
    args = ["train", "-d", data, "-o", run, "-s", "tiny", "--seq-len", "16", "-b", "4"]
    args += ["--max-steps", "1", "--eval-steps", "1", "--device", "cpu", "--wandb", "proj"]
    result = gpt2(*args)
    assert result.code == 0, result.stderr
    assert result.stdout == b""
    run_id = (run / "wandb-id").read_text().strip()
    [offline] = (run / "wandb").glob(f"offline-run-*-{run_id}")
    assert (offline / f"run-{run_id}.wandb").stat().st_size > 0


def test_tracker_not_installed_is_a_usage_error(data: Path, tmp_path: Path, gpt2, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    run = tmp_path / "run"
    result = gpt2("train", "-d", data, "-o", run, "-s", "tiny", "--wandb", "proj")
    assert result.code == 2
    assert result.stderr.strip().splitlines() == [
        "gpt2 train: error: --wandb needs the wandb package, which is not installed "
        "(pip install 'gpt2cli[track]')"
    ]
    assert not (run / "metrics.jsonl").exists()


# --- benchmarks while training --------------------------------------------------------------


@pytest.fixture
def task_data(tmp_path: Path) -> Path:
    return write_task_data(tmp_path / "taskdata")


def png_size(path: Path) -> tuple[int, int]:
    return struct.unpack(">II", path.read_bytes()[16:24])


def test_eval_task_at_each_validation(data: Path, task_data: Path, tmp_path: Path, gpt2) -> None:
    run = tmp_path / "run"
    given = fast(data, run, max_steps=2, eval_task=["hellaswag", "lambada"], eval_task_limit=2)
    setup.train({**given, "eval_task_data": str(task_data)})
    tasks = records(run, "task")
    assert [(r["step"], r["task"], r["n"], r["metric"]) for r in tasks] == [
        (step, name, 2, metric)
        for step in (0, 2)
        for name, metric in (("hellaswag", "acc_norm"), ("lambada", "acc"))
    ]
    # The last validation saw the final weights: `gpt2 eval` on final/ gives the same metrics.
    result = gpt2(
        "eval", "hellaswag", "lambada", "--model", run / "final", "--data-dir", task_data,
        "--limit", "2", "--json", "--zero-shot",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    printed = json.loads(result.stdout)["results"]
    for record in tasks[-2:]:
        for metric, value in record["metrics"].items():
            assert value == pytest.approx(printed[record["task"]][f"{metric},none"], rel=1e-5)
    assert png_size(run / "loss.png") == (800, 800)  # the benchmark panel under the loss one


@pytest.mark.parametrize(
    "case, code, message",
    [
        ("missing", 1, "--eval-task hellaswag: hellaswag: data file hellaswag_val.jsonl not found"),
        ("unknown", 2, "unknown task 'nosuch'"),
        ("limit", 2, "--eval-task-limit must be positive, not 0"),
    ],
)
def test_eval_task_bad_input_before_training(
    case: str, code: int, message: str, data: Path, tmp_path: Path, gpt2
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    task = "nosuch" if case == "unknown" else "hellaswag"
    limit = "0" if case == "limit" else "2"
    run = tmp_path / "run"
    result = gpt2(
        "train", "-d", data, "-o", run, "-s", "tiny", "--seq-len", "32", "--device", "cpu",
        "--eval-task", task, "--eval-task-limit", limit, "--eval-task-data", empty,
    )  # fmt: skip
    assert result.code == code
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("gpt2 train: error: " + message)
    assert not (run / "metrics.jsonl").exists()


# --- the loss-spike guard -------------------------------------------------------------------


def spike_at(*steps: int):
    return lambda step, loss: loss * 50 if step in steps else loss


GUARDED = dict(**FAST, max_steps=7, save_every=3, eval_every=10, skip_loss_z=10.0, skip_window=3)


def test_spike_guard_skips_a_planted_spike_resumes_bit_for_bit_and_stops(
    data: Path, tmp_path: Path
) -> None:
    hooks = setup.TrainHooks(loss=spike_at(5))
    guarded, resumed, stopped = tmp_path / "guarded", tmp_path / "resumed", tmp_path / "stopped"
    setup.train(options(data, guarded, **GUARDED), hooks=hooks)
    trained = records(guarded, "train")
    assert [r["step"] for r in trained if r.get("skipped")] == [5]
    # Interrupted after step 4, resumed from step 3: the window came back with the checkpoint.
    crash = setup.TrainHooks(loss=spike_at(5), after_step=crash_after(4))
    with pytest.raises(Crash):
        setup.train(options(data, resumed, **GUARDED), hooks=crash)
    setup.train({"out": str(resumed)}, resume=True, hooks=hooks)
    assert records(resumed, "train") != [] and losses(resumed) == losses(guarded)
    assert [r.get("skipped") for r in records(resumed, "train")] == [
        r.get("skipped") for r in trained
    ]
    # Spikes from step 4 on: 2 skipped in a row stop the run, its checkpoint of step 3 kept.
    with pytest.raises(Gpt2Error) as error:
        setup.train(
            options(data, stopped, **{**GUARDED, "max_skips": 2}),
            hooks=setup.TrainHooks(loss=spike_at(*range(4, 8))),
        )
    saved = stopped / run_layout.CHECKPOINTS / run_layout.step_name(3)
    assert error.value.message.startswith(
        "2 updates in a row skipped as spikes, the last at step 5"
    )
    assert error.value.message.endswith(f"stopped; last good checkpoint: {saved}")
    assert run_layout.is_complete(saved) and not (stopped / run_layout.FINAL).exists()
    assert [r["step"] for r in records(stopped, "train") if r.get("skipped")] == [4, 5]
    # Skipping step 4 kept the weights of step 3: step 5's loss differs from the guarded run's.
    assert losses(stopped)[:3] == losses(guarded)[:3]
    assert losses(stopped)[4] != losses(guarded)[4]


def test_guard_on_the_gradient_norm_and_its_window() -> None:
    guard = SpikeGuard(loss_z=0.0, grad_z=2.0, window=3, max_skips=5)
    assert [guard.check(1.0, norm) for norm in (1.0, 1.2, 0.8)] == [None, None, None]
    assert guard.check(1.0, 9.0) == "gradient norm 9 is 49.0 standard deviations up"
    assert guard.in_a_row == 1 and list(guard.norms) == [1.0, 1.2, 0.8]  # a spike stays out
    assert guard.check(1.0, 1.1) is None and guard.in_a_row == 0
    copy = SpikeGuard(0.0, 2.0, 3, 5)
    copy.load_state_dict(guard.state_dict())
    assert copy.state_dict() == guard.state_dict() == {
        "losses": [1.0, 1.0, 1.0], "norms": [1.2, 0.8, 1.1], "in_a_row": 0
    }  # fmt: skip
    assert z_score(guard.losses, 1.0) == 0.0 and z_score(guard.losses, 1.5) == float("inf")


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--skip-loss-z", "-1", "--skip-loss-z must be 0 (off) or more, not -1.0"),
        ("--skip-grad-z", "-0.5", "--skip-grad-z must be 0 (off) or more, not -0.5"),
        ("--skip-window", "1", "--skip-window must be at least 2, not 1"),
        ("--max-skips", "0", "--max-skips must be positive, not 0"),
    ],
)
def test_guard_bad_options(flag: str, value: str, message: str, data: Path, tmp_path, gpt2):
    result = gpt2("train", "-d", data, "-o", tmp_path / "run", "-s", "tiny", flag, value)
    assert result.code == 2
    assert result.stderr.strip().splitlines() == [f"gpt2 train: error: {message}"]


@pytest.mark.parametrize(
    ("project", "message"),
    [
        ("", "--wandb: the project name is empty"),
        ("   ", "--wandb: the project name is empty"),
        ("team/project", "--wandb 'team/project': not a W&B project name"),
        ("a#b", "--wandb 'a#b': not a W&B project name"),
        ("x" * 129, "not a W&B project name"),
        ("tab\there", "not a W&B project name"),
    ],
)
def test_a_wandb_project_name_wandb_refuses_is_a_usage_error(
    data: Path, tmp_path: Path, gpt2, project: str, message: str
) -> None:
    """Checked before anything is trained, and never answered with a login hint."""
    run = tmp_path / "run"
    result = gpt2("train", "--data", data, "-o", run, "--size", "tiny", "--device", "cpu",
                  "--max-steps", "1", "--wandb", project)  # fmt: skip
    assert result.code == 2
    lines = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(lines) == 1 and message in lines[0] and "login" not in lines[0], result.stderr
    assert not (run / "metrics.jsonl").exists()
