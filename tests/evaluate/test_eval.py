"""gpt2 eval: registry, data lookup and download (loopback), the LM tasks' metrics, results JSON,
bad input."""

from __future__ import annotations

import hashlib
import http.server
import json
import math
import os
import re
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
import torch
from _eval_files import save_tiny_model, write_task_files  # tests/ is on sys.path

from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.evaluate import tasks
from gpt2cli.evaluate.language_model import LanguageModel
from gpt2cli.evaluate.tasks import task_files
from gpt2cli.evaluate.tasks.base import DataFile, EvalOptions, Task, mean_stderr
from gpt2cli.evaluate.tasks.detokenize import (
    onebw_detokenizer,
    ptb_detokenizer,
    wikitext_detokenizer,
)
from gpt2cli.evaluate.tasks.lambada import split_example
from gpt2cli.evaluate.tasks.wikitext import count_words, split_articles
from gpt2cli.text.tokenizer import encode

transformers = pytest.importorskip("transformers")
torch.set_num_threads(1)
BLOCK = 32
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}

LAMBADA_LINES = [
    "The cat sat on the mat and looked at the dog dog",
    "When she came home, she found her keys on the table",
    "He said hello to everyone in the room before leaving leaving",
    "It rained all day in the old city",
    "He came home and found them them",  # a stop-word target: the filter must miss it
]
WIKI_RAW = (
    " \n = Robert Boulter = \n \n Robert Boulter is an English film , television and theatre "
    "actor . He had a guest @-@ starring role in 2000 .\n \n = = Career = = \n \n In 2006 , "
    "Boulter starred alongside Whishaw in the play Citizenship .\n \n = Du Fu = \n \n Du Fu "
    "( 712 – 770 ) was a prominent Chinese poet of the Tang dynasty . \n \n"
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("eval") / "tiny")


@pytest.fixture(scope="module")
def lm(model_dir: Path) -> LanguageModel:
    return LanguageModel.load(str(model_dir), device="cpu", batch_size=4)


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    return write_task_files(tmp_path, LAMBADA_LINES, WIKI_RAW)


def run(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gpt2cli", *args], capture_output=True, env=env or ENV, timeout=300
    )


# ---------------------------------------------------------------- registry and helpers


def test_registry() -> None:
    names = [task.name for task in tasks.all_tasks()]
    for name in ("lambada", "wikitext2", "wikitext103", "ptb", "enwik8", "text8", "1bw"):
        assert name in names
    assert tasks.get_task("LAMBADA").name == "lambada"
    with pytest.raises(UsageError, match="known tasks: .*lambada"):
        tasks.get_task("nope")
    for task in tasks.all_tasks():
        assert isinstance(task, Task) and task.data_files and task.paper_metric


def test_mean_stderr() -> None:
    assert mean_stderr([1.0]) is None
    values = [0.0, 1.0, 1.0, 0.0]
    assert mean_stderr(values) == pytest.approx(math.sqrt(1 / 3) / 2)


def test_detokenizers_on_known_strings() -> None:
    assert (
        wikitext_detokenizer(
            " The station 's 1 @,@ 000 @-@ seat hall ( built in 1900 ) "
            ", he said .\n = = History = = \n"
        )
        == " The station's 1,000-seat hall (built in 1900), he said .\n== History ==\n"
    )
    assert (
        wikitext_detokenizer('He said " hello " and left ; then')
        == 'He said "hello" and left; then'
    )
    assert (
        ptb_detokenizer(" it was n't black monday \n the N stocks fell $ N \n")
        == " it wasn't black monday\nthe 1 stocks fell $ N\n"
    )
    assert (
        onebw_detokenizer("The cat , he said , was n't there .")
        == "The cat, he said, wasn't there."
    )


def test_split_articles_and_words() -> None:
    pages = split_articles(WIKI_RAW)
    assert len(pages) == 2
    assert pages[0].startswith(" = Robert Boulter = ") and "= = Career = =" in pages[0]
    assert pages[1].startswith(" = Du Fu = ")
    assert count_words(pages[1]) == len(re.split(r"\s+", pages[1]))
    assert split_example("a b c") == ("a b", " c")
    assert split_example("word") == ("", " word")


# ---------------------------------------------------------------- metrics by hand


def test_lambada_metrics_by_hand(lm: LanguageModel, data_dir: Path) -> None:
    task = tasks.get_task("lambada")
    result = task.evaluate(lm, data_dir / "lambada_test.jsonl", EvalOptions(stop_word_filter=True))
    model = lm.model
    from gpt2cli.evaluate.tasks.lambada import stop_word_token_ids

    stop_ids = torch.tensor(stop_word_token_ids())
    lls, hits, hits_filtered = [], [], []
    for text in LAMBADA_LINES:
        context, target = split_example(text)
        ctx, cont = lm.encode_pair(context, target)
        whole = ctx + cont
        with torch.no_grad():
            logits, _ = model(torch.tensor([whole[:-1]]))
        logprobs = torch.log_softmax(logits[0].double(), -1)
        positions = range(len(ctx) - 1, len(whole) - 1)
        lls.append(sum(float(logprobs[p, whole[p + 1]]) for p in positions))
        hits.append(float(all(int(logits[0, p].argmax()) == whole[p + 1] for p in positions)))
        masked = logits[0].clone()
        masked[len(ctx) - 1, stop_ids] = -math.inf  # stop words never win the first token
        hits_filtered.append(float(all(int(masked[p].argmax()) == whole[p + 1] for p in positions)))
    assert result.n == 5
    assert result.metrics["acc"].value == pytest.approx(sum(hits) / 5)
    assert 0 < result.metrics["acc"].value < 1  # the repeated words are predicted
    assert result.metrics["perplexity"].value == pytest.approx(math.exp(-sum(lls) / 5), rel=1e-5)
    assert result.metrics["acc_stop_word_filter"].value == pytest.approx(sum(hits_filtered) / 5)
    assert hits[-1] == 1.0 and hits_filtered[-1] == 0.0
    requests = [split_example(text) for text in LAMBADA_LINES]
    assert [
        float(g) for _, g in lm.loglikelihood(requests, exclude=stop_word_token_ids())
    ] == hits_filtered
    assert [
        (float(g), float(f))
        for _, g, f in lm.loglikelihood_filtered(requests, stop_word_token_ids())
    ] == list(zip(hits, hits_filtered))
    assert len(stop_ids) > 100 and encode(" the")[0] in stop_ids.tolist()
    limited = task.evaluate(lm, data_dir / "lambada_test.jsonl", EvalOptions(limit=2))
    assert limited.n == 2 and limited.extra["original"] == 5


def test_wikitext_metrics_by_hand(lm: LanguageModel, data_dir: Path) -> None:
    result = tasks.get_task("wikitext2").evaluate(
        lm, data_dir / "wikitext-2-raw" / "wiki.test.raw", EvalOptions()
    )
    pages = split_articles(WIKI_RAW)
    nll = tokens = 0.0
    for page in pages:
        n, t = lm.rolling_nll(wikitext_detokenizer(page))  # checked by hand in test_score
        nll += n
        tokens += t
    words = sum(len(re.split(r"\s+", page)) for page in pages)
    n_bytes = sum(len(page.encode()) for page in pages)
    m = result.metrics
    assert result.n == 2
    assert m["word_perplexity"].value == pytest.approx(math.exp(nll / words), rel=1e-6)
    assert m["byte_perplexity"].value == pytest.approx(math.exp(nll / n_bytes), rel=1e-6)
    assert m["bits_per_byte"].value == pytest.approx(nll / n_bytes / math.log(2), rel=1e-6)
    assert m["token_perplexity"].value == pytest.approx(math.exp(nll / tokens), rel=1e-6)


def test_ptb_1bw_enwik8_text8_by_hand(lm: LanguageModel, tmp_path: Path) -> None:
    ptb = tmp_path / "ptb.test.txt"
    ptb.write_text(" no it was n't black monday \n the N stocks fell $ N billion \n")
    result = tasks.get_task("ptb").evaluate(lm, ptb, EvalOptions())
    nll, _ = lm.rolling_nll("no it wasn't black monday\nthe 1 stocks fell $1 billion")
    assert result.metrics["word_perplexity"].value == pytest.approx(math.exp(nll / 15), rel=1e-6)

    onebw = tmp_path / "news.en.heldout-00000-of-00050"
    onebw.write_text("The cat , he said , was n't there .\nPrices rose on Monday .\n")
    result = tasks.get_task("1bw").evaluate(lm, onebw, EvalOptions())
    nlls = [
        lm.rolling_nll(t)[0] for t in ("The cat, he said, wasn't there.", "Prices rose on Monday.")
    ]
    assert result.metrics["word_perplexity"].value == pytest.approx(
        math.exp(sum(nlls) / (11 + 6)), rel=1e-6
    )

    enwik8 = tmp_path / "enwik8"
    raw = "<page>Café naïve</page>\n".encode() * 40
    enwik8.write_bytes(raw)
    result = tasks.get_task("enwik8").evaluate(lm, enwik8, EvalOptions())
    nll, _ = lm.rolling_nll(raw.decode())
    assert result.metrics["bits_per_byte"].value == pytest.approx(
        nll / len(raw) / math.log(2), rel=1e-6
    )
    limited = tasks.get_task("enwik8").evaluate(lm, enwik8, EvalOptions(limit=1))
    assert limited.n <= 1000

    text8 = tmp_path / "text8"
    text8.write_text("the quick brown fox " * 50)
    result = tasks.get_task("text8").evaluate(lm, text8, EvalOptions())
    nll, _ = lm.rolling_nll("the quick brown fox " * 50)
    assert result.metrics["bits_per_char"].value == pytest.approx(
        nll / 1000 / math.log(2), rel=1e-6
    )


# ---------------------------------------------------------------- data lookup and download


class _Server:
    def __init__(self, root: Path) -> None:
        handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(  # noqa: E731
            *a, directory=str(root), **k
        )
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _FileTask(Task):
    name = "fixture"
    description = "test"
    paper_metric = "acc"

    def __init__(self, *files: DataFile) -> None:
        self.data_files = files

    def evaluate(self, lm, data, options):  # pragma: no cover - not run
        raise NotImplementedError


def test_download_on_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = tmp_path / "served"
    served.mkdir()
    payload = b'{"text": "a b c"}\n'
    (served / "file.jsonl").write_bytes(payload)
    with zipfile.ZipFile(served / "archive.zip", "w") as zipped:
        zipped.writestr("inner/wiki.test.raw", "zipped text")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    good = hashlib.sha256(payload).hexdigest()
    with _Server(served) as server:
        plain = DataFile("file.jsonl", f"{server.url}/file.jsonl", good, "the fixture")
        task = _FileTask(plain)
        with pytest.raises(Gpt2Error, match="file.jsonl not found") as missing:
            task_files.resolve(task)
        assert "--download" in str(missing.value)
        path = task_files.resolve(task, download=True)
        assert path == tmp_path / "cache" / "gpt2cli" / "file.jsonl"
        assert path.read_bytes() == payload
        assert task_files.resolve(task) == path  # now found in the cache

        zipped = DataFile(
            "wikitext-x/wiki.test.raw",
            f"{server.url}/archive.zip",
            None,
            "the zip",
            archive_member="inner/wiki.test.raw",
        )
        path = task_files.resolve(_FileTask(zipped), download=True)
        assert path.read_text() == "zipped text"

        wrong = DataFile("other.jsonl", f"{server.url}/file.jsonl", "0" * 64, "the fixture")
        with pytest.raises(Gpt2Error, match="checksum mismatch.*deleted"):
            task_files.resolve(_FileTask(wrong), download=True)
        assert not (tmp_path / "cache" / "gpt2cli" / "other.jsonl").exists()
        assert not [
            p for p in (tmp_path / "cache" / "gpt2cli").iterdir() if p.name.startswith(".download")
        ]

        absent = DataFile("absent.jsonl", f"{server.url}/absent.jsonl", None, "the fixture")
        with pytest.raises(Gpt2Error, match="HTTP 404"):
            task_files.resolve(_FileTask(absent), download=True)
    offline = DataFile("off.jsonl", "http://127.0.0.1:9/off.jsonl", None, "somewhere public")
    with pytest.raises(Gpt2Error, match="cannot download off.jsonl") as error:
        task_files.resolve(_FileTask(offline), download=True)
    assert "somewhere public" in str(error.value)


def test_download_through_the_cli_mirror(
    model_dir: Path, tmp_path: Path, gpt2, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / "lambada_test.jsonl").write_text(json.dumps({"text": "one two three"}) + "\n")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with _Server(served) as server:
        monkeypatch.setenv(task_files.MIRROR_ENV, server.url)
        result = gpt2("eval", "lambada", "--model", str(model_dir), "--download")
    # the fixture is not the published file: its checksum differs and the download is deleted
    assert result.code == 1
    assert "checksum mismatch" in result.stderr and "deleted" in result.stderr
    assert not (tmp_path / "cache" / "gpt2cli" / "lambada_test.jsonl").exists()


def test_data_dir_and_data(tmp_path: Path, data_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "nocache"))
    task = tasks.get_task("wikitext2")
    assert (
        task_files.resolve(task, data_dir=data_dir) == data_dir / "wikitext-2-raw" / "wiki.test.raw"
    )
    with pytest.raises(Gpt2Error, match="no such file"):
        task_files.resolve(task, data=tmp_path / "missing.raw")


# ---------------------------------------------------------------- the command


def test_eval_command_results_json(model_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = run(
        [
            "eval",
            "lambada",
            "wikitext2",
            "--zero-shot",
            "--model",
            str(model_dir),
            "--data-dir",
            str(data_dir),
            "-o",
            str(out),
            "--json",
            "--limit",
            "3",
            "--stop-word-filter",
        ]
    )
    assert result.returncode == 0, result.stderr.decode()
    printed = json.loads(result.stdout)
    written = json.loads(out.read_text())
    assert printed["results"] == written["results"]
    # lm-evaluation-harness's layout
    for key in ("results", "versions", "n-shot", "higher_is_better", "n-samples", "config", "date"):
        assert key in written
    lambada = written["results"]["lambada"]
    assert lambada["alias"] == "lambada"
    for metric in ("acc", "perplexity", "acc_stop_word_filter"):
        assert isinstance(lambada[f"{metric},none"], float)
        assert isinstance(lambada[f"{metric}_stderr,none"], float)
    wiki = written["results"]["wikitext2"]
    assert isinstance(wiki["word_perplexity,none"], float)
    assert wiki["word_perplexity_stderr,none"] == "N/A"
    assert written["n-samples"]["lambada"] == {"original": 5, "effective": 3}
    assert written["n-samples"]["wikitext2"] == {"original": 2, "effective": 2}
    assert written["higher_is_better"]["lambada"] == {
        "acc": True,
        "perplexity": False,
        "acc_stop_word_filter": True,
    }
    assert written["n-shot"] == {"lambada": 0, "wikitext2": 0}
    config = written["config"]
    assert config["limit"] == 3 and config["batch_size"] == 8 and config["seed"] == 0
    assert config["model_args"] == str(model_dir)
    model = written["model"]
    weights = model_dir / "model.safetensors"
    assert model["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert model["weights_bytes"] == weights.stat().st_size
    assert model["parameters"] > 0 and model["path"] == str(model_dir)
    assert written["gpt2cli_version"] and isinstance(written["date"], float)
    assert (
        written["tasks"]["lambada"]["data_sha256"]
        == hashlib.sha256((data_dir / "lambada_test.jsonl").read_bytes()).hexdigest()
    )
    stderr = result.stderr.decode()
    assert "acc" in stderr and "word_perplexity" in stderr and "±" in stderr


@pytest.mark.parametrize(
    "case",
    [
        "unknown",
        "limit0",
        "missing",
        "truncated",
        "wrong_format",
        "not_jsonl",
        "no_task",
        "two_tasks_one_file",
    ],
)
def test_eval_bad_input(case: str, model_dir: Path, data_dir: Path, tmp_path: Path, gpt2) -> None:
    lambada = data_dir / "lambada_test.jsonl"
    args = ["eval", "lambada", "--model", str(model_dir), "--data", str(lambada)]
    expect_code, expect = 1, ""
    if case == "unknown":
        args[1], expect_code, expect = "lambda", 2, "known tasks:"
    elif case == "limit0":
        args += ["--limit", "0"]
        expect_code, expect = 2, "--limit"
    elif case == "missing":
        args[-1], expect = str(tmp_path / "none.jsonl"), "none.jsonl"
    elif case == "truncated":
        lambada.write_text(lambada.read_text() + '{"text": "cut off')
        expect = "line 6: truncated"
    elif case == "wrong_format":
        args = ["eval", "wikitext2", "--model", str(model_dir), "--data", str(lambada)]
        expect = "not a raw WikiText file"
    elif case == "not_jsonl":
        args[-1] = str(data_dir / "wikitext-2-raw" / "wiki.test.raw")
        expect = "line 2: not JSON"
    elif case == "no_task":
        args = ["eval", "--model", str(model_dir)]
        expect_code, expect = 2, "no task"
    elif case == "two_tasks_one_file":
        args = ["eval", "lambada", "wikitext2", "--model", str(model_dir), "--data", str(lambada)]
        expect_code, expect = 2, "--data-dir"
    result = gpt2(*args)
    assert result.code == expect_code, result.stderr
    assert expect in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_eval_list(gpt2) -> None:
    result = gpt2("eval", "--list", "--json")
    assert result.code == 0
    listed = {row["task"]: row for row in json.loads(result.stdout)}
    assert listed["lambada"]["files"][0]["sha256"].startswith("4aa8d02c")
    assert listed["wikitext2"]["files"][0]["name"] == "wikitext-2-raw/wiki.test.raw"
