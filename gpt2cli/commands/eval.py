"""``gpt2 eval``: the GPT-2 paper's zero-shot benchmarks (and lm-eval's versions of them)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from gpt2cli import console, jsonio
from gpt2cli.commands import options
from gpt2cli.errors import UsageError
from gpt2cli.evaluate import results, tasks
from gpt2cli.evaluate.tasks.base import EvalOptions, TaskResult
from gpt2cli.fileio import atomic_write, check_output_directory, check_output_file

NAME = "eval"


def _list_tasks(as_json: bool) -> None:
    rows = []
    for task in tasks.all_tasks():
        rows.append(
            {
                "task": task.name,
                "description": task.description,
                "paper_metric": task.paper_metric,
                "files": [
                    {"name": f.name, "url": f.url, "sha256": f.sha256, "source": f.source}
                    for f in task.data_files
                ],
            }
        )
    if as_json:
        sys.stdout.write(jsonio.dumps(rows, indent=2) + "\n")
        return
    for row in rows:
        files = ", ".join(f["name"] + (" (--download)" if f["url"] else "") for f in row["files"])
        sys.stdout.write(
            f"{row['task']:<14} {row['paper_metric']:<18} {files}\n{'':14} {row['description']}\n"
        )


def _format(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 1000:
        return f"{value:,.2f}"
    return f"{value:.4f}"


def _table(task_results: dict[str, TaskResult]) -> None:
    from rich.table import Table

    table = Table(title=None, show_edge=False)
    for column, justify in (
        ("task", "left"),
        ("metric", "left"),
        ("value", "right"),
        ("± stderr", "right"),
        ("n", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for name, result in task_results.items():
        for k, (metric, value) in enumerate(result.metrics.items()):
            arrow = "↑" if value.higher_is_better else "↓"
            table.add_row(
                name if k == 0 else "",
                f"{metric} {arrow}",
                _format(value.value),
                _format(value.stderr),
                f"{result.n:,}" if k == 0 else "",
            )
    console.stderr_console().print(table)


def eval_command(
    names: list[str],
    model_spec: str | None,
    data: Path | None,
    data_dir: Path | None,
    download: bool,
    output: Path | None,
    as_json: bool,
    options: EvalOptions,
    device: str | None,
    dtype: str | None,
    log_samples: Path | None = None,
    cache_dir: Path | None = None,
) -> None:
    from gpt2cli.evaluate import runner

    chosen = runner.choose_tasks(names, data)
    for flag, path in (("--log-samples", log_samples), ("-o", output)):
        if path is not None:
            check_output_file(path, flag)
    if cache_dir is not None:  # found before the evaluation, not after it (results lost)
        check_output_directory(cache_dir, "--cache")
    if model_spec is None:
        raise UsageError("missing --model", "pass a run directory, checkpoint or HF model")
    paths = runner.find_data(chosen, data, data_dir, download)
    timer = console.Stopwatch()
    import torch  # deferred: `gpt2 eval --help` and `--list` do not need it

    from gpt2cli.evaluate.language_model import LanguageModel
    from gpt2cli.model.resolve import resolve_device

    device = resolve_device(device)

    torch.manual_seed(options.seed)
    lm = LanguageModel.load(model_spec, device=device, dtype=dtype, batch_size=options.batch_size)
    lm.use_stride(options.stride)
    evaluation = runner.EvalRun()
    if cache_dir is not None:
        from gpt2cli.evaluate.cache import EvalCache

        evaluation.model = results.model_identity(model_spec, lm.loaded)
        evaluation.cache = EvalCache(
            cache_dir, evaluation.model["sha256"], lm.block_size, torch.device(device).type, dtype
        )
        if not evaluation.cache.usable:
            console.warn(NAME, f"--cache: {model_spec} has no weights file to hash: not cached")
    with console.progress() as bar:
        for task in chosen:
            progress_id = bar.add_task(task.name, total=None, status="windows")
            result, seconds = evaluation.evaluate(
                lm,
                task,
                paths[task.name],
                options,
                lambda n, progress_id=progress_id: bar.advance(progress_id, n),
            )
            if task.name in evaluation.cache_hits:
                console.info(
                    f"gpt2 eval: {task.name}: cache hit, result reused, not recomputed "
                    f"({evaluation.cache_hits[task.name]})"
                )
            if not console.stderr_is_tty():
                main = runner.main_metric(task, result)
                console.info(
                    f"gpt2 eval: {task.name}: {task.paper_metric} "
                    f"{_format(main.value)} (n={result.n:,}, "
                    f"{seconds:.1f} s)"
                )
    document = evaluation.document(model_spec, lm, options, device, dtype, timer.seconds)
    text = results.dumps(document)
    _table(evaluation.results)
    if output is not None:
        with atomic_write(output, "w") as handle:
            handle.write(text)
    if log_samples is not None:
        from gpt2cli.evaluate import sample_log

        lines = sample_log.write(
            log_samples, {name: result.samples for name, result in evaluation.results.items()}
        )
        console.info(f"gpt2 eval: {lines:,} examples logged to {log_samples}")
    if as_json:
        sys.stdout.write(text)
        sys.stdout.flush()


def register(app: typer.Typer) -> None:
    @app.command(NAME)
    @options.with_fields(EvalOptions, {"limit": "as_json", "seed": "dtype"})
    def evaluate(
        names: list[str] = typer.Argument(
            None,
            help="Tasks to run (see --list).",
            show_default=False,
            metavar="TASK",
        ),
        model: str = options.model_option(None),
        data: Path = options.optional("--data", help="The task's data file (one task only)."),
        data_dir: Path = options.optional(
            "--data-dir",
            help="A directory holding data files under their published names (see --list).",
        ),
        download: bool = options.switch(
            "--download",
            help="Fetch missing data files from their public URL into "
            "$XDG_CACHE_HOME/gpt2cli, checking their sha256.",
        ),
        output: Path = options.optional(
            "--output", "-o", help="Write the results JSON here (atomically)."
        ),
        as_json: bool = options.switch(
            "--json", help="Print the results JSON on stdout (with --list: the tasks)."
        ),
        device: str = options.DEVICE,
        dtype: str = options.DTYPE,
        zero_shot: bool = options.switch(
            "--zero-shot", help="Accepted for clarity: every task is zero-shot."
        ),
        list_tasks: bool = options.switch("--list", help="List the tasks and their files."),
        log_samples: Path = options.optional(
            "--log-samples",
            metavar="FILE",
            help="Write one JSON line per example (task, doc_id, arguments, target, resps, "
            "prediction, its metrics: lm-eval's --log_samples keys), atomically.",
        ),
        cache: Path = options.optional(
            "--cache",
            metavar="DIR",
            help="Reuse a task's result stored in DIR for the same model weights (sha256), "
            "task, data (sha256) and options, instead of recomputing it; store new ones.",
        ),
        **given: Any,
    ) -> None:
        """Run zero-shot benchmarks (lambada, wikitext2, ...) on a model: a table on stderr,
        the results JSON (lm-evaluation-harness's layout) with -o or --json."""
        if list_tasks:
            _list_tasks(as_json)
            return
        if not names:
            raise UsageError("no task given", "name one or more tasks; see `gpt2 eval --list`")
        eval_command(
            names,
            model,
            data,
            data_dir,
            download,
            output,
            as_json,
            options.build(EvalOptions, given),
            device,
            dtype,
            log_samples,
            cache,
        )
