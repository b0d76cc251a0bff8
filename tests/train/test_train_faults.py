"""`gpt2 train` under faults caused for real: two runs into one directory, kill -9 and Ctrl-C
before the first checkpoint, a NaN, truncated checkpoints, a file-size limit, unwritable -o."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _train_runs import ENV, Crash, make_shards, options, train_losses  # tests/ is on sys.path

from gpt2cli import run_layout
from gpt2cli.errors import Gpt2Error
from gpt2cli.train import metrics_log, setup


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shards(tmp_path_factory.mktemp("faults") / "shards", documents=60, val_tokens=200)


def flags(data: Path, run: Path, **extra: object) -> list[str]:
    """``options(...)`` as `gpt2 train` command-line flags."""
    args = ["train"]
    for name, value in options(data, run, eval_every=100, **extra).items():
        args += ["-o" if name == "out" else f"--{name.replace('_', '-')}", str(value)]
    return args


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if ": error: " in line]
    assert len(lines) == 1, stderr
    return lines[0]


# A trainer that stalls after step 1 (holding its run directory, before its first checkpoint).
STALL = """
import sys, time
from gpt2cli.train import setup
setup.train(dict(data=sys.argv[1], out=sys.argv[2], size='tiny', seq_len=32, batch_size=8,
    micro_batch=8, max_steps=3, save_every=2, eval_every=100, device='cpu', seed=1),
    hooks=setup.TrainHooks(after_step=lambda step: time.sleep(120)))
"""


def test_a_second_train_into_a_held_run_is_refused_and_a_killed_one_is_taken_over(
    data: Path, tmp_path: Path, gpt2
) -> None:
    run = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-c", STALL, str(data), str(run)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not metrics_log.read_metrics(run / "metrics.jsonl") and first.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert first.poll() is None, first.stderr.read().decode()
        before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
        second = gpt2(*flags(data, run, seed=2))
        assert second.code == 1
        line = one_error_line(second.stderr)
        assert line.startswith(f"gpt2 train: error: -o {run} is in use by pid {first.pid} on")
        assert socket.gethostname() in line
        assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    finally:
        first.kill()  # kill -9 before its first checkpoint: the kernel drops its lock
        first.wait()
        first.stderr.close()
    assert run_layout.latest_complete(run) is None
    again = gpt2(*flags(data, run, seed=2, max_steps=2))
    assert again.code == 0, again.stderr
    assert "holds no complete checkpoint" in again.stderr and "afresh" in again.stderr
    assert trainconfig_seed(run) == 2
    assert len(train_losses(run)) == 2  # nothing of the killed run's metrics left


def trainconfig_seed(run: Path) -> int:
    from gpt2cli.train import config as trainconfig

    return trainconfig.load_yaml(run / "config.yaml")["seed"]


def test_a_run_that_fails_before_its_first_checkpoint_says_a_rerun_starts_afresh(
    data: Path, tmp_path: Path, gpt2, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"

    def nan_at_2(step: int, loss):
        return loss * float("nan") if step == 2 else loss

    with pytest.raises(Gpt2Error) as caught:
        setup.train(options(data, run, eval_every=100), hooks=setup.TrainHooks(loss=nan_at_2))
    message = str(caught.value)
    assert message.startswith("loss became nan at step 2: stopped (")
    assert "checkpoint:" not in message  # none exists to point at
    assert f"nothing was saved yet: the same command starts {run} afresh" in message

    def interrupt(step: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        setup.train(options(data, run, eval_every=100), hooks=setup.TrainHooks(interrupt))
    err = capsys.readouterr().err
    assert "holds no complete checkpoint" in err
    assert f"interrupted; nothing was saved yet: the same command starts {run} afresh" in err
    # --resume has nothing to resume and says what to do; a new start takes the directory over.
    refused = gpt2("train", "-o", run, "--resume")
    assert refused.code == 1 and "without --resume: a new start takes" in refused.stderr
    again = gpt2(*flags(data, run))
    assert again.code == 0, again.stderr
    assert run_layout.is_complete(run / "final")


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def crash_after(step: int) -> setup.TrainHooks:
    """Hooks that crash the run once step ``step`` is done (and saved, if it saves)."""

    def crash(done: int) -> None:
        if done == step:
            raise Crash

    return setup.TrainHooks(after_step=crash)


def test_a_damaged_newest_checkpoint_is_skipped_by_resume_and_by_model_run(
    data: Path, tmp_path: Path, gpt2, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"

    with pytest.raises(Crash):
        setup.train(options(data, run, max_steps=6), hooks=crash_after(5))
    truncate(run / "checkpoints" / "step-00000004" / "training_state.pt")
    capsys.readouterr()
    setup.train({"out": str(run)}, resume=True)
    err = capsys.readouterr().err
    assert (
        f"gpt2 train: warning: skipped checkpoint {run}/checkpoints/step-00000004: "
        "training_state.pt is damaged" in err
    )
    assert f"resumed from {run}/checkpoints/step-00000002" in err
    assert [
        r["step"] for r in metrics_log.read_metrics(run / "metrics.jsonl") if r["kind"] == "train"
    ] == [1, 2, 3, 4, 5, 6]
    # The re-saved step 4 replaced the damaged one; now damage the final weights.
    truncate(run / "final" / "model.safetensors")
    source = tmp_path / "doc.txt"
    source.write_text("a few words to score\n")
    scored = gpt2("score", "--model", run, source)
    assert scored.code == 0, scored.stderr
    assert f"skipped checkpoint {run}/final: model.safetensors is damaged" in scored.stderr
    assert json.loads(scored.stdout.decode().splitlines()[0])["tokens"] > 0
    for name in ("step-00000004", "step-00000002"):
        truncate(run / "checkpoints" / name / "model.safetensors")
    broken = gpt2("score", "--model", run, source)
    assert broken.code == 1
    assert one_error_line(broken.stderr).endswith(
        "every complete checkpoint is damaged (see above)"
    )


def test_a_run_whose_every_checkpoint_is_damaged_is_started_afresh_by_a_new_start(
    data: Path, tmp_path: Path, gpt2
) -> None:
    """No circular hints: --resume says to start without it, and that start takes over."""
    run = tmp_path / "run"
    with pytest.raises(Crash):
        setup.train(options(data, run, max_steps=6), hooks=crash_after(3))
    damaged = run_layout.latest_complete(run)
    assert damaged is not None
    truncate(damaged / "model.safetensors")
    resumed = gpt2("train", "-o", run, "--resume")
    assert resumed.code == 1
    assert one_error_line(resumed.stderr) == (
        f"gpt2 train: error: --resume: {run} has no loadable checkpoint (every checkpoint is "
        "damaged (see the warnings above): start it again without --resume to start the "
        "directory afresh)"
    )
    fresh = gpt2(*flags(data, run, max_steps=2))
    assert fresh.code == 0, fresh.stderr
    assert (
        f"gpt2 train: {run} holds only damaged checkpoints (none loads): starting the run "
        "there afresh" in fresh.stderr
    )
    assert run_layout.newest_loadable(run, with_state=True, warn=False) is not None
    assert [r["step"] for r in metrics_log.read_metrics(run / "metrics.jsonl")
            if r["kind"] == "train"] == [1, 2]  # fmt: skip


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


LIMIT = 20 << 20  # a tiny model's weights (13 MB) fit, its training state (27 MB) does not


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"

    with pytest.raises(Crash):
        setup.train(options(data, run), hooks=crash_after(3))
    result = subprocess.run(
        [sys.executable, "-m", "gpt2cli", "train", "-o", str(run), "--resume"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size,
    )
    assert result.returncode == 1, result.stderr
    assert one_error_line(result.stderr) == (
        f"gpt2 train: error: {run}/final: file too large "
        f"(--resume continues from {run}/checkpoints/step-00000002)"
    )
    assert "Traceback" not in result.stderr
    assert not list((run / "checkpoints").glob("*.tmp-*"))
    assert run_layout.latest_resumable(run).name == "step-00000002"
    setup.train({"out": str(run)}, resume=True)
    assert len(train_losses(run)) == 4 and run_layout.is_complete(run / "final")


def test_an_unwritable_run_directory_is_one_line(data: Path, tmp_path: Path, gpt2) -> None:
    result = gpt2(*flags(data, Path("/dev/null/run")))
    assert (result.code, result.stderr) == (
        1,
        "gpt2 train: error: /dev/null/run: not a directory\n",
    )
    if os.geteuid() == 0:
        return  # root writes into a read-only directory
    parent = tmp_path / "read-only"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        result = gpt2(*flags(data, parent / "run"))
    finally:
        parent.chmod(0o755)
    assert (result.code, result.stderr) == (
        1,
        f"gpt2 train: error: {parent / 'run'}: permission denied\n",
    )
