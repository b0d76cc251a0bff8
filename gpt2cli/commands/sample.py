"""``gpt2 sample``: continue a prompt with a GPT-2 (KV-cache generation), streamed to stdout."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

import typer

from gpt2cli import console, jsonio
from gpt2cli.commands import options
from gpt2cli.errors import UsageError
from gpt2cli.infer.sample_options import SampleOptions
from gpt2cli.text import readers
from gpt2cli.text.read_options import ReadOptions
from gpt2cli.text.tokenizer import EOT_TEXT, encode

NAME = "sample"
SEPARATOR = f"\n{EOT_TEXT}\n"  # between samples: the same delimiter `gpt2 tokenize` splits on

HELP = f"""Continue PROMPT with a GPT-2 and stream the text to stdout.

The prompt is the argument, else stdin (one trailing newline removed). An empty prompt samples
from {EOT_TEXT}. Only the continuation is printed (--echo adds the prompt). With -n N the N
samples are generated as one batch and printed one after the other, separated by a line
{EOT_TEXT} (the delimiter `gpt2 tokenize` splits documents on); the output ends with a newline.

--jsonl reads prompts as JSON Lines from stdin ({{"prompt": ...}} per line, other fields are
copied to the output), unless PROMPT is given, and writes one JSON object per completion:
prompt, text, sample, prompt_tokens, completion_tokens, finish_reason ("eot", "stop" or
"length").

A sample ends at {EOT_TEXT} (unless --ignore-eot), at a --stop string (not printed), or after
--max-tokens tokens. A prompt longer than the model's context keeps its last tokens; generation
past the context slides the window (keeping the last 3/4 of it).
"""


class _OrderedWriter:
    """Streams rows in order: row k is written live once rows < k are complete, else buffered."""

    def __init__(self, out: BinaryIO, rows: int, prefix: str) -> None:
        self.out = out
        self.rows = rows
        self.prefix = prefix
        self.current = 0
        self.buffers: list[list[str]] = [[] for _ in range(rows)]
        self.done = [False] * rows
        self._write(prefix)

    def _write(self, text: str) -> None:
        if text:
            self.out.write(text.encode("utf-8"))
            self.out.flush()

    def text(self, row: int, piece: str) -> None:
        if row == self.current:
            self._write(piece)
        else:
            self.buffers[row].append(piece)

    def finished(self, row: int) -> None:
        self.done[row] = True
        while self.current < self.rows and self.done[self.current]:
            self.current += 1
            if self.current < self.rows:
                self._write(SEPARATOR + self.prefix + "".join(self.buffers[self.current]))
                self.buffers[self.current] = []
            else:
                self._write("\n")


def _read_stdin_prompt() -> str:
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError(
            "no prompt: give PROMPT or pipe one on stdin", "use '' to sample from <|endoftext|>"
        )
    data = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    if data.endswith("\r\n"):
        return data[:-2]
    return data[:-1] if data.endswith("\n") else data


def _jsonl_prompts(field: str) -> Iterator[readers.Document]:
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("--jsonl reads prompts from stdin", f'pipe JSON Lines with a "{field}"')
    yield from ReadOptions(format="jsonl", field=field).documents(["-"])


def _quiet_broken_pipe() -> None:
    """The reader went away (`| head`): stop quietly, without a flush error at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
    raise typer.Exit(141)


def run_sample(
    prompt: str | None,
    model_spec: str,
    options: SampleOptions,
    jsonl: bool,
    field: str,
    echo: bool,
    device_name: str,
    dtype_name: str,
) -> None:
    from gpt2cli.infer import scoring
    from gpt2cli.infer.sample import Sampler
    from gpt2cli.model import resolve

    options.check()
    device = resolve.resolve_device(device_name)
    dtype = resolve.resolve_dtype(dtype_name, device)
    # Read a piped prompt before the (slow) model load, so usage errors come first.
    single = prompt if prompt is not None else (None if jsonl else _read_stdin_prompt())
    records = _jsonl_prompts(field) if single is None else None
    loaded = resolve.load_model(model_spec, device=device, dtype=dtype)
    sampler = Sampler(loaded.model, options, device, many_prompts=single is None)
    timer = console.Stopwatch()
    out = sys.stdout.buffer
    produced = completions = 0
    block = loaded.config.block_size
    try:
        if records is None:
            assert single is not None
            if not single:
                console.info("gpt2 sample: empty prompt: generating from <|endoftext|>")
            ids = encode(single)
            if len(ids) > block:
                console.warn(
                    NAME,
                    f"the prompt has {len(ids):,} tokens, more than the context "
                    f"{block}: keeping its last {block}",
                )
            if jsonl:
                results = sampler.generate([ids])
                _write_jsonl(out, [single], [None], results)
            else:
                writer = _OrderedWriter(out, options.num_samples, single if echo else "")
                results = sampler.generate(
                    [ids], on_text=writer.text, on_done=lambda c: writer.finished(c.sample_index)
                )
            produced = sum(c.completion_tokens for c in results)
            completions = len(results)
        else:
            for chunk in scoring.chunked(records, options.prompts_per_batch):
                prompts = [encode(doc.text) for doc in chunk]
                for doc, ids in zip(chunk, prompts):
                    if not ids:
                        console.warn(
                            NAME,
                            f"{doc.source}: line {doc.line}: empty prompt: "
                            "generating from <|endoftext|>",
                        )
                    elif len(ids) > block:
                        console.warn(
                            NAME,
                            f"{doc.source}: line {doc.line}: prompt of "
                            f"{len(ids):,} tokens: keeping its last {block}",
                        )
                results = sampler.generate(prompts)
                _write_jsonl(out, [d.text for d in chunk], [d.fields for d in chunk], results)
                produced += sum(c.completion_tokens for c in results)
                completions += len(results)
        out.flush()
    except BrokenPipeError:
        _quiet_broken_pipe()
    seconds = timer.seconds
    console.info(
        f"gpt2 sample: {completions} completion(s), {produced:,} tokens in {seconds:.1f} s "
        f"({produced / seconds:,.1f} tokens/s), seed {sampler.seed}, {loaded.description} "
        f"on {device.type} {str(dtype).removeprefix('torch.')}"
    )


def _write_jsonl(out: BinaryIO, texts: list[str], fields: list[dict | None], results: list) -> None:
    for completion in results:
        record = dict(fields[completion.prompt_index] or {})
        record.update(
            prompt=texts[completion.prompt_index],
            text=completion.text,
            sample=completion.sample_index,
            prompt_tokens=len(completion.prompt_ids),
            completion_tokens=completion.completion_tokens,
            finish_reason=completion.finish_reason,
        )
        if completion.prompt_truncated:
            record["prompt_truncated"] = completion.prompt_truncated
        out.write(jsonio.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
    out.flush()


def register(app: typer.Typer) -> None:
    @app.command(NAME, help=HELP)
    @options.with_fields(SampleOptions, {"max_tokens": "model", "batch_size": "echo"})
    def sample(
        prompt: str | None = typer.Argument(
            None,
            metavar="PROMPT",
            help="The text to continue ('-' or absent: read stdin; '' : <|endoftext|>).",
        ),
        model: str = options.model_option(metavar="SPEC"),
        jsonl: bool = options.switch(
            "--jsonl",
            help="Read prompts as JSON Lines from stdin, write one JSON object per completion.",
        ),
        field: str = typer.Option(
            "prompt",
            "--field",
            metavar="NAME",
            help="With --jsonl: the field that holds the prompt.",
        ),
        echo: bool = options.switch(
            "--echo", help="Print the prompt before each sample (text output)."
        ),
        device: str = options.DEVICE,
        dtype: str = options.DTYPE,
        **given: Any,
    ) -> None:
        run_sample(
            None if prompt == "-" else prompt,
            model,
            options.build(SampleOptions, given),
            jsonl,
            field,
            echo,
            device,
            dtype,
        )
