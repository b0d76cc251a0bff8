"""Generation (against transformers and a naive reference) and the `gpt2 sample` command."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gpt2cli.errors import UsageError
from gpt2cli.infer import generation
from gpt2cli.infer.generation import SamplingSettings as Settings
from gpt2cli.model import hf
from gpt2cli.model.gpt import GPT, GPTConfig
from gpt2cli.text.tokenizer import EOT, encode

torch.set_num_threads(1)
PROMPT = encode("The meaning of life is")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random GPT-2 in the HF layout, with weights large enough for varied text."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=64))
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0, 0.3)
    directory = tmp_path_factory.mktemp("sample") / "tiny"
    hf.save_pretrained(model, directory)
    return directory


@pytest.fixture(scope="module")
def model(model_dir: Path) -> GPT:
    return hf.load_pretrained(model_dir)


@pytest.mark.parametrize("one_by_one", [False, True])
def test_greedy_equals_transformers_generate(
    model_dir: Path, model: GPT, one_by_one: bool, kernel: str
) -> None:
    """In one left-padded batch, and one prompt at a time as `gpt2 sample` prepares the model
    for one row (the CPU's one-row decoding step; without the compiled kernel, a column-major
    output layer)."""
    transformers = pytest.importorskip("transformers")
    reference = transformers.GPT2LMHeadModel.from_pretrained(model_dir).eval()
    prompts = [PROMPT, encode("Hello"), encode("A much longer prompt, of several more tokens")]
    if one_by_one:
        model = copy.deepcopy(model)
        generation.prepare_model(model, 1)
        assert model.lm_head.weight.is_contiguous() == (kernel == "compiled")
        ours = [generation.generate(model, [p], Settings(40, greedy=True))[0] for p in prompts]
    else:
        ours = generation.generate(model, prompts, Settings(40, greedy=True))
    for prompt, completion in zip(prompts, ours):
        x = torch.tensor([prompt])
        out = reference.generate(
            x,
            attention_mask=torch.ones_like(x),
            do_sample=False,
            max_new_tokens=40,
            pad_token_id=EOT,
            eos_token_id=EOT,
        )
        expected = out[0, len(prompt) :].tolist()
        if EOT in expected:
            expected = expected[: expected.index(EOT)]
            assert completion.finish_reason == "eot"
        assert len(set(expected)) > 5  # not a degenerate repetition
        assert completion.ids == expected


def naive_generate(model: GPT, prompt: list[int], steps: int) -> list[int]:
    """Greedy by full forwards over the window the sliding policy keeps."""
    block = model.config.block_size
    keep = block - block // 4
    tokens = list(prompt[-block:])
    start = 0
    out = []
    with torch.no_grad():
        for _ in range(steps):
            if len(tokens) - start > block:
                start = len(tokens) - keep
            token = int(model(torch.tensor([tokens[start:]]))[0][:, -1].argmax())
            tokens.append(token)
            out.append(token)
    return out


def test_generation_past_the_context_slides_the_window(model: GPT) -> None:
    long_prompt = encode(" the cat sat on the mat" * 20)  # > 64 tokens
    for prompt in (PROMPT, long_prompt):
        completion = generation.generate(
            model, [prompt], Settings(150, greedy=True, ignore_eot=True)
        )[0]
        assert completion.ids == naive_generate(model, prompt, 150)
        assert completion.finish_reason == "length"
    assert completion.prompt_truncated == len(long_prompt) - 64
    assert len(completion.prompt_ids) == 64


def test_batched_prompts_equal_one_by_one(model: GPT) -> None:
    prompts = [PROMPT, encode("Hi"), [], encode(" x" * 30)]
    batched = generation.generate(model, prompts, Settings(30, greedy=True, ignore_eot=True))
    for prompt, completion in zip(prompts, batched):
        alone = generation.generate(model, [prompt], Settings(30, greedy=True, ignore_eot=True))[0]
        assert completion.ids == alone.ids
    assert batched[2].prompt_ids == [EOT]


def test_same_seed_same_text(model: GPT) -> None:
    options = dict(top_k=40, top_p=0.95, temperature=0.9, ignore_eot=True)
    first = generation.generate(model, [PROMPT], Settings(20, seed=7, **options), num_samples=3)
    again = generation.generate(model, [PROMPT], Settings(20, seed=7, **options), num_samples=3)
    other = generation.generate(model, [PROMPT], Settings(20, seed=8, **options), num_samples=3)
    assert [c.ids for c in first] == [c.ids for c in again]
    assert [c.ids for c in first] != [c.ids for c in other]
    assert len({tuple(c.ids) for c in first}) == 3  # the samples of a batch differ


def test_degenerate_filters_are_greedy(model: GPT) -> None:
    greedy = generation.generate(model, [PROMPT], Settings(15, greedy=True, ignore_eot=True))[0].ids
    for options in (dict(top_k=1), dict(top_p=1e-9), dict(temperature=0.0)):
        sampled = generation.generate(
            model, [PROMPT], Settings(15, seed=1, ignore_eot=True, **options)
        )
        assert sampled[0].ids == greedy, options


def test_pick_tokens_filters() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    generator = torch.Generator().manual_seed(0)
    draws = {int(generation.pick_tokens(logits, top_k=2, generator=generator)) for _ in range(200)}
    assert draws == {0, 1}
    draws = {
        int(generation.pick_tokens(logits, top_p=0.85, generator=generator)) for _ in range(300)
    }
    assert draws == {0, 1, 2}


def test_stop_strings_and_streaming(model: GPT) -> None:
    free = generation.generate(model, [PROMPT], Settings(40, greedy=True, ignore_eot=True))[0].text
    stop = free[10:13]
    pieces: list[str] = []
    done = []
    cut = generation.generate(
        model,
        [PROMPT],
        Settings(40, greedy=True, ignore_eot=True, stop=[stop]),
        on_text=lambda row, piece: pieces.append(piece),
        on_done=done.append,
    )[0]
    assert cut.finish_reason == "stop"
    assert cut.text == free[: free.index(stop)]
    assert "".join(pieces) == cut.text
    assert done == [cut]
    pieces.clear()
    whole = generation.generate(
        model,
        [PROMPT],
        Settings(40, greedy=True, ignore_eot=True, stop=["never appears"]),
        on_text=lambda r, p: pieces.append(p),
    )[0]
    assert whole.text == free and "".join(pieces) == free


def test_bad_options_are_usage_errors(model: GPT) -> None:
    for options in (
        dict(top_p=0.0),
        dict(top_p=1.5),
        dict(temperature=-1.0),
        dict(top_k=0),
    ):
        with pytest.raises(UsageError):
            generation.generate(model, [PROMPT], Settings(5, **options))
    with pytest.raises(UsageError):
        generation.generate(model, [PROMPT], Settings(5), num_samples=0)
    with pytest.raises(UsageError):
        generation.generate(model, [PROMPT], Settings(0))


# --- the command ---------------------------------------------------------------------------


def gpt2_child(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    """The real command in a child process (slow to start: used only where it matters)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "gpt2cli", "sample", *args],
        input=stdin,
        capture_output=True,
        env=env,
    )


def sample_in_process(gpt2, *args: str, stdin: bytes = b"") -> tuple[int, bytes, str]:
    """`gpt2 sample ARGS` run in this process: (exit status, stdout, stderr)."""
    result = gpt2("sample", *args, stdin=stdin)
    return result.code, result.stdout, result.stderr


def test_cli_samples_streamed_and_separated(model_dir: Path, model: GPT, gpt2) -> None:
    code, out, err = sample_in_process(
        gpt2,
        "-m",
        str(model_dir),
        "--max-tokens",
        "12",
        "-n",
        "3",
        "--seed",
        "4",
        "--ignore-eot",
        "The meaning of life is",
    )
    assert code == 0, err
    texts = out.decode().removesuffix("\n").split("\n<|endoftext|>\n")
    assert len(texts) == 3
    expected = generation.generate(
        model, [PROMPT], Settings(12, seed=4, ignore_eot=True), num_samples=3
    )
    assert texts == [c.text for c in expected]
    assert "seed 4" in err
    code, echoed, _ = sample_in_process(
        gpt2,
        "-m",
        str(model_dir),
        "--max-tokens",
        "12",
        "--seed",
        "4",
        "--ignore-eot",
        "--echo",
        stdin=b"The meaning of life is\n",
    )
    assert code == 0
    single = generation.generate(model, [PROMPT], Settings(12, seed=4, ignore_eot=True))[0]
    assert echoed.decode() == "The meaning of life is" + single.text + "\n"


def test_cli_jsonl(model_dir: Path, model: GPT, gpt2) -> None:
    lines = b'{"prompt": "The meaning of life is", "id": 1}\n{"prompt": ""}\n'
    code, out, err = sample_in_process(
        gpt2, "-m", str(model_dir), "--jsonl", "--greedy", "--max-tokens", "8", stdin=lines
    )
    assert code == 0, err
    records = [json.loads(line) for line in out.decode().splitlines()]
    assert [r["prompt"] for r in records] == ["The meaning of life is", ""]
    assert records[0]["id"] == 1 and records[0]["prompt_tokens"] == len(PROMPT)
    greedy = generation.generate(model, [PROMPT], Settings(8, greedy=True))[0]
    assert records[0]["text"] == greedy.text
    assert records[0]["completion_tokens"] == len(greedy.ids)
    assert records[0]["finish_reason"] == greedy.finish_reason
    assert records[1]["prompt_tokens"] == 1
    assert "empty prompt" in err
    code, _, err = sample_in_process(gpt2, "-m", str(model_dir), "--jsonl", stdin=b"not json\n")
    assert code == 1 and "line 1: malformed JSON" in err


def test_cli_bad_values_are_usage_errors(model_dir: Path, gpt2) -> None:
    for args in (
        ["--top-p", "0"],
        ["--top-p", "1.5"],
        ["--temperature", "-1"],
        ["--max-tokens", "0"],
        ["--dtype", "fp8"],
        ["-n", "0"],
        ["--top-k", "x"],
    ):
        code, _, err = sample_in_process(gpt2, "-m", str(model_dir), *args, "hi")
        assert code == 2, args
        assert "Traceback" not in err
    code, _, err = sample_in_process(gpt2, "-m", str(model_dir), stdin=b"")
    assert code == 0
    assert "empty prompt" in err


def test_cli_missing_model_and_early_closed_pipe(model_dir: Path, tmp_path: Path) -> None:
    result = gpt2_child("-m", str(tmp_path / "missing"), "hi")
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == [
        f"gpt2 sample: error: model {str(tmp_path / 'missing')!r} not found: no such file or "
        "directory"
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "gpt2cli",
        "sample",
        "-m",
        str(model_dir),
        "--max-tokens",
        "100000",
        "--ignore-eot",
        "--seed",
        "1",
        "Once upon a time",
    ]
    producer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert producer.stdout is not None
    head = producer.stdout.read(100)
    producer.stdout.close()  # like `| head -c 100`
    _, stderr = producer.communicate(timeout=300)
    assert len(head) == 100
    assert producer.returncode in (-13, 141)  # SIGPIPE, quietly
    assert b"Traceback" not in stderr and b"Error" not in stderr
