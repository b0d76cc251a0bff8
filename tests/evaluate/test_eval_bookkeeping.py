"""gpt2 eval --log-samples (one JSON line per example, lm-eval's keys) and --cache DIR (a
result reused for the same weights, task, data and options, not recomputed)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from gpt2cli.evaluate import sample_log
from gpt2cli.evaluate.tasks import get_task
from gpt2cli.evaluate.tasks.base import EvalOptions

transformers = pytest.importorskip("transformers")
torch.set_num_threads(1)

LAMBADA_LINES = [
    "The cat sat on the mat and looked at the dog dog",
    "When she came home, she found her keys on the table",
    "He said hello to everyone in the room before leaving leaving",
]
WIKI_RAW = (
    " \n = Robert Boulter = \n \n Robert Boulter is an English film , television and theatre "
    "actor .\n \n = Du Fu = \n \n Du Fu ( 712 – 770 ) was a prominent Chinese poet . \n \n"
)
HELLASWAG = [
    {
        "activity_label": "Baking",
        "ctx_a": "A woman mixes flour.",
        "ctx_b": "she",
        "endings": ["eats it.", "puts the dough in the oven.", "sings."],
        "label": 1,
    },
    {
        "activity_label": "Running",
        "ctx_a": "A man runs.",
        "ctx_b": "he",
        "endings": ["stops.", "flies away."],
        "label": 0,
    },
]


def strict_json(line: str) -> dict:
    def refuse(constant: str) -> None:
        raise ValueError(f"non-JSON constant {constant}")

    return json.loads(line, parse_constant=refuse)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=64, n_positions=32)
    directory = tmp_path_factory.mktemp("book") / "tiny"
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(directory)
    return directory


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    directory.mkdir()
    (directory / "lambada_test.jsonl").write_text(
        "".join(json.dumps({"text": line}) + "\n" for line in LAMBADA_LINES)
    )
    (directory / "wikitext-2-raw").mkdir()
    (directory / "wikitext-2-raw" / "wiki.test.raw").write_text(WIKI_RAW)
    (directory / "hellaswag_val.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in HELLASWAG)
    )
    return directory


def test_log_samples_one_line_per_example(model_dir: Path, data_dir: Path, tmp_path, gpt2):
    log = tmp_path / "samples.jsonl"
    out = tmp_path / "results.json"
    run = gpt2(
        "eval", "lambada", "hellaswag", "wikitext2", "-m", model_dir, "--data-dir", data_dir,
        "--log-samples", log, "-o", out,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert "7 examples logged" in run.stderr
    records = [strict_json(line) for line in log.read_text().splitlines()]
    results = json.loads(out.read_text())["results"]
    by_task: dict[str, list[dict]] = {}
    for record in records:
        by_task.setdefault(record["task"], []).append(record)
    assert {k: len(v) for k, v in by_task.items()} == {"lambada": 3, "hellaswag": 2, "wikitext2": 2}
    for task, rows in by_task.items():
        assert [r["doc_id"] for r in rows] == list(range(len(rows)))
        for key in ("arguments", "target", "resps", "filtered_resps", "prediction"):
            assert all(key in r for r in rows), (task, key)

    lambada = by_task["lambada"]
    assert lambada[0]["arguments"] == [["The cat sat on the mat and looked at the dog", " dog"]]
    assert lambada[0]["target"] == " dog"
    ll, greedy = lambada[0]["filtered_resps"][0]
    assert lambada[0]["resps"] == [[[ll, greedy]]] and lambada[0]["correct"] is greedy
    assert sum(r["acc"] for r in lambada) / 3 == pytest.approx(results["lambada"]["acc,none"])
    mean_ll = sum(r["filtered_resps"][0][0] for r in lambada) / 3
    assert math.exp(-mean_ll) == pytest.approx(results["lambada"]["perplexity,none"])

    hellaswag = by_task["hellaswag"]
    assert [len(r["arguments"]) for r in hellaswag] == [3, 2]
    assert [r["target"] for r in hellaswag] == [1, 0]
    for r in hellaswag:
        lls = [ll for ll, _ in r["filtered_resps"]]
        assert r["prediction"] == max(range(len(lls)), key=lambda i: (lls[i], -i))
        assert r["acc"] == float(r["prediction"] == r["target"])
        assert r["correct"] == (r["acc"] == 1.0)
    assert sum(r["acc_norm"] for r in hellaswag) / 2 == pytest.approx(
        results["hellaswag"]["acc_norm,none"]
    )

    wiki = by_task["wikitext2"]
    nll = -sum(r["filtered_resps"][0] for r in wiki)
    words = sum(r["words"] for r in wiki)
    assert math.exp(nll / words) == pytest.approx(results["wikitext2"]["word_perplexity,none"])
    assert wiki[0]["arguments"][0][0].startswith(" = Robert Boulter =\n")


def test_samples_of_generation_and_choice_tasks(tmp_path: Path) -> None:
    from gpt2cli.evaluate.language_model import LanguageModel
    from gpt2cli.model.gpt import GPT, config_for_size

    torch.manual_seed(0)
    config = config_for_size("tiny")
    lm = LanguageModel(GPT(config).eval(), block_size=config.block_size, batch_size=8)
    nq_data = tmp_path / "NQ-open.dev.jsonl"
    nq_data.write_text(
        '{"question": "where is paris", "answer": ["France"]}\n'
        '{"question": "who wrote hamlet", "answer": ["Shakespeare", "William Shakespeare"]}\n'
    )
    result = get_task("nq").evaluate(lm, nq_data, EvalOptions())
    assert len(result.samples) == result.n == 2
    second = result.samples[1]
    assert second["target"] == ["Shakespeare", "William Shakespeare"]
    assert second["arguments"][0][0].endswith("who wrote hamlet?\nA:")
    assert second["filtered_resps"] == [second["resps"][0][0].split("\n")[0].strip()]
    assert second["correct"] is (second["exact_match"] == 1.0)


def test_non_finite_numbers_are_null() -> None:
    record = sample_log.rolling(0, "x", math.inf, 1, words=1)
    line = sample_log.dumps({"task": "t", **record, "nested": [math.nan, 1.0]})
    parsed = strict_json(line)
    assert parsed["resps"] == [[None]] and parsed["nested"] == [None, 1.0]


def count_evaluations(monkeypatch: pytest.MonkeyPatch, name: str) -> list[str]:
    task = get_task(name)
    calls: list[str] = []
    original = type(task).evaluate

    def counted(self, lm, data, options):
        calls.append(self.name)
        return original(self, lm, data, options)

    monkeypatch.setattr(type(task), "evaluate", counted)
    return calls


def test_cache_reuses_results(model_dir: Path, data_dir: Path, tmp_path, gpt2, monkeypatch):
    calls = count_evaluations(monkeypatch, "lambada")
    cache = tmp_path / "cache"
    base = ("eval", "lambada", "-m", model_dir, "--data-dir", data_dir, "--cache", cache)

    first = gpt2(*base, "--json", "--log-samples", tmp_path / "a.jsonl")
    assert first.code == 0, first.stderr
    assert calls == ["lambada"] and "cache hit" not in first.stderr
    (entry,) = cache.iterdir()
    stored = strict_json(entry.read_text())
    weights = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    data_sha = hashlib.sha256((data_dir / "lambada_test.jsonl").read_bytes()).hexdigest()
    assert stored["key"]["model_sha256"] == weights
    assert stored["key"]["data_sha256"] == data_sha
    assert stored["key"]["task"] == "lambada"
    assert stored["key"]["options"] == {
        "limit": None, "seed": 0, "stop_word_filter": False, "stride": None,
    }  # fmt: skip
    assert entry.name.startswith("lambada-") and entry.name.endswith(".json")
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temp files left

    second = gpt2(*base, "--json", "--log-samples", tmp_path / "b.jsonl", "-b", "2")
    assert second.code == 0, second.stderr
    assert calls == ["lambada"], "a cache hit must not recompute"
    assert "lambada: cache hit, result reused, not recomputed" in second.stderr
    assert str(entry) in second.stderr
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert one["results"] == two["results"] and one["n-samples"] == two["n-samples"]
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()

    # Another option, other data, another model: recomputed, each its own entry.
    assert gpt2(*base, "--limit", "2").code == 0
    assert calls == ["lambada"] * 2
    (data_dir / "lambada_test.jsonl").write_text(json.dumps({"text": "a b c"}) + "\n")
    assert gpt2(*base).code == 0
    assert calls == ["lambada"] * 3
    assert len(list(cache.iterdir())) == 3

    # A damaged entry is recomputed and rewritten.
    entry.write_text("{not json")
    (data_dir / "lambada_test.jsonl").write_text(
        "".join(json.dumps({"text": line}) + "\n" for line in LAMBADA_LINES)
    )
    again = gpt2(*base, "--json")
    assert again.code == 0 and calls == ["lambada"] * 4
    assert f"gpt2 eval: warning: --cache: {entry.name} is unreadable" in again.stderr
    assert json.loads(again.stdout)["results"] == one["results"]
    assert strict_json(entry.read_text())["key"] == stored["key"]


def test_cache_entry_edited_by_hand_or_of_an_older_task_version_is_recomputed(
    model_dir: Path, data_dir: Path, tmp_path, gpt2, monkeypatch
) -> None:
    calls = count_evaluations(monkeypatch, "lambada")
    cache = tmp_path / "cache"
    base = ("eval", "lambada", "-m", model_dir, "--data-dir", data_dir, "--cache", cache, "--json")
    first = gpt2(*base)
    assert first.code == 0, first.stderr
    version = get_task("lambada").version
    assert json.loads(first.stdout)["versions"] == {"lambada": version}
    (entry,) = cache.iterdir()
    stored = strict_json(entry.read_text())
    assert set(stored) == {"key", "result", "task_data", "sha256"}
    assert stored["key"]["task_version"] == version
    acc = stored["result"]["metrics"]["acc"]["value"]
    stored["result"]["metrics"]["acc"]["value"] = 9.0
    entry.write_text(json.dumps(stored) + "\n")

    edited = gpt2(*base)
    assert edited.code == 0 and calls == ["lambada"] * 2, "an edited entry must be recomputed"
    warnings = [line for line in edited.stderr.splitlines() if "warning: --cache" in line]
    assert warnings == [
        f"gpt2 eval: warning: --cache: {entry.name} fails its checksum (edited or damaged): "
        "recomputed and rewritten"
    ]
    assert json.loads(edited.stdout)["results"]["lambada"]["acc,none"] == acc
    assert strict_json(entry.read_text())["result"]["metrics"]["acc"]["value"] == acc
    rewritten = gpt2(*base)  # trusted again
    assert rewritten.code == 0 and calls == ["lambada"] * 2 and "--cache" not in rewritten.stderr

    monkeypatch.setattr(type(get_task("lambada")), "version", version + 1)  # its scoring changed
    newer = gpt2(*base)
    assert newer.code == 0 and calls == ["lambada"] * 3, "an older version's entry is not reused"
    assert "cache hit" not in newer.stderr
    assert json.loads(newer.stdout)["versions"] == {"lambada": version + 1}
    (new,) = set(cache.iterdir()) - {entry}
    assert strict_json(new.read_text())["key"]["task_version"] == version + 1


def test_bookkeeping_bad_input(model_dir: Path, data_dir: Path, tmp_path, gpt2) -> None:
    base = ("eval", "lambada", "-m", model_dir, "--data-dir", data_dir)
    run = gpt2(*base, "--log-samples", tmp_path)
    assert run.code == 1 and "--log-samples" in run.stderr and "is a directory" in run.stderr
    blocker = tmp_path / "file"
    blocker.write_text("")
    run = gpt2(*base, "--cache", blocker)
    assert run.code == 1 and run.stderr.startswith("gpt2 eval: error: --cache")
    assert len(run.stderr.strip().splitlines()) == 1
