"""Multiple-choice tasks (hellaswag, cbt, winograd): parsing, prompts, metrics by hand.

A fake language model with fixed scores checks the task logic and the metrics exactly; one test
runs the tasks on a tiny random-weight model through gpt2cli.evaluate.language_model.LanguageModel.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.evaluate.tasks import cbt, get_task, hellaswag, winograd
from gpt2cli.evaluate.tasks.base import EvalOptions


class FakeLM:
    """loglikelihood from a function of (context, continuation); records the requests."""

    block_size = 1024

    def __init__(self, score) -> None:
        self.score = score
        self.requests: list[tuple[str, str]] = []

    def loglikelihood(self, requests):
        self.requests.extend(requests)
        return [(float(self.score(c, x)), False) for c, x in requests]


def _se(values):
    n = len(values)
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


# ---------------------------------------------------------------------------------- hellaswag


HELLASWAG = [
    {
        "ind": 4,
        "activity_label": "Baking cookies",
        "ctx_a": "A woman mixes flour.",
        "ctx_b": "she",
        "endings": ["eats it.", "puts the dough in the oven [title] and waits."],
        "label": 1,
        "split": "val",
    },
    {
        "ind": 5,
        "activity_label": "Running",
        "ctx_a": "A man runs.",
        "ctx_b": "THEN he",
        "endings": ["stops.", "flies away into space."],
        "label": "0",
    },
]


def _write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_hellaswag_preprocess_and_requests(tmp_path):
    data = _write_jsonl(tmp_path / "hellaswag_val.jsonl", HELLASWAG)
    examples = hellaswag.load(data)
    # lm-eval: activity_label + ": " + ctx_a + " " + ctx_b.capitalize(); [title] -> ". "
    assert examples[0][0] == "Baking cookies: A woman mixes flour. She"
    assert examples[0][1] == ["eats it.", "puts the dough in the oven. and waits."]
    assert examples[1][0] == "Running: A man runs. Then he"
    # one pass of "  " -> " ", as lm-eval: three spaces become two
    assert hellaswag.preprocess("  a [header] b  [step] c ") == "a b  c"
    assert [g for _, _, g in examples] == [1, 0]


def test_hellaswag_acc_and_acc_norm(tmp_path):
    data = _write_jsonl(tmp_path / "hellaswag_val.jsonl", HELLASWAG)
    # example 1: the short wrong ending wins on the sum (-2 > -9), the long gold ending wins
    # per character (-9/37 > -2/8); example 2: the gold ending wins both ways.
    scores = {
        " eats it.": -2.0,
        " puts the dough in the oven. and waits.": -9.0,
        " stops.": -1.0,
        " flies away into space.": -30.0,
    }
    lm = FakeLM(lambda c, x: scores[x])
    result = get_task("hellaswag").evaluate(lm, data, EvalOptions())
    assert lm.requests[0] == ("Baking cookies: A woman mixes flour. She", " eats it.")
    assert len(lm.requests) == 4
    assert result.n == 2
    assert result.metrics["acc"].value == 0.5
    assert result.metrics["acc"].stderr == pytest.approx(_se([0, 1]))
    assert result.metrics["acc_norm"].value == 1.0
    assert result.metrics["acc_norm"].stderr == 0.0
    limited = get_task("hellaswag").evaluate(
        FakeLM(lambda c, x: scores[x]), data, EvalOptions(limit=1)
    )
    assert limited.n == 1 and limited.metrics["acc"].value == 0.0


def test_hellaswag_bad_input(tmp_path):
    bad = tmp_path / "hellaswag_val.jsonl"
    bad.write_text(json.dumps(HELLASWAG[0]) + "\n" + '{"ctx_a": "tru', encoding="utf-8")
    with pytest.raises(Gpt2Error, match=r"hellaswag_val.jsonl: line 2: truncated JSON"):
        hellaswag.load(bad)
    missing = _write_jsonl(tmp_path / "m.jsonl", [{"ctx_a": "x"}])
    with pytest.raises(Gpt2Error, match=r"m.jsonl: line 1: missing field 'activity_label'"):
        hellaswag.load(missing)
    with pytest.raises(UsageError):
        get_task("hellaswag").evaluate(FakeLM(lambda c, x: 0), missing, EvalOptions(limit=0))
    with pytest.raises(Gpt2Error, match="no such file"):
        hellaswag.load(tmp_path / "absent.jsonl")


# ---------------------------------------------------------------------------------------- cbt


def _cbt_example(answer: str, candidates: list[str], question: str) -> str:
    lines = [f"{k} Sentence number {k} , said `` Tom '' ." for k in range(1, 21)]
    lines.append(f"21 {question}\t{answer}\t\t{'|'.join(candidates)}")
    return "\n".join(lines) + "\n\n"


CANDIDATES = ["apple", "boat", "cat", "dog", "egg", "fish", "goat", "hat", "ink", "jam"]


def test_cbt_parse_detokenize_and_requests(tmp_path):
    data = tmp_path / "cbtest_CN_valid_2000ex.txt"
    data.write_text(_cbt_example("cat", CANDIDATES, "The XXXXX did n't sleep ."), "utf-8")
    [(sentences, question, answer, candidates)] = cbt.load(data)
    assert len(sentences) == 20 and sentences[0] == "Sentence number 1 , said `` Tom '' ."
    assert (question, answer, candidates) == ("The XXXXX did n't sleep .", "cat", CANDIDATES)
    assert (
        cbt.detokenize("`` Hello , '' said Tom . I do n't know !")
        == '"Hello," said Tom. I don\'t know!'
    )
    requests = cbt.requests_for(sentences, question, candidates)
    assert len(requests) == 10
    context, continuation = requests[2]
    assert context.startswith('Sentence number 1, said "Tom". Sentence number 2,')
    assert context.endswith('Sentence number 20, said "Tom".')
    assert continuation == " The cat didn't sleep."


def test_cbt_acc(tmp_path):
    data = tmp_path / "cbtest_NE_valid_2000ex.txt"
    data.write_text(
        _cbt_example("cat", CANDIDATES, "The XXXXX sat .")
        + _cbt_example("dog", CANDIDATES, "A XXXXX ran .")
        + _cbt_example("jam", CANDIDATES, "Some XXXXX here ."),
        "utf-8",
    )
    # the model prefers "cat" everywhere, then "jam"; ties elsewhere
    prefs = {"cat": -1.0, "jam": -2.0}
    lm = FakeLM(lambda c, x: next((v for w, v in prefs.items() if f" {w} " in x), -5.0))
    result = get_task("cbt-ne").evaluate(lm, data, EvalOptions())
    assert len(lm.requests) == 30
    assert result.n == 3
    assert result.metrics["acc"].value == pytest.approx(1 / 3)  # right only on the first
    assert result.metrics["acc"].stderr == pytest.approx(_se([1, 0, 0]))
    assert get_task("cbt-ne").evaluate(lm, data, EvalOptions(limit=1)).metrics["acc"].value == 1


def test_cbt_bad_input(tmp_path):
    text = _cbt_example("cat", CANDIDATES, "The XXXXX sat .")
    truncated = tmp_path / "cbtest_CN_valid_2000ex.txt"
    truncated.write_text(text + text[:300], "utf-8")
    with pytest.raises(Gpt2Error, match=r"cbtest_CN_valid_2000ex.txt: line \d+: file ends"):
        cbt.load(truncated)
    wrong = tmp_path / "wrong.txt"
    wrong.write_text(text.replace("21 The", "21 Thy").replace("XXXXX", "YYYYY"), "utf-8")
    with pytest.raises(Gpt2Error, match=r"wrong.txt: line 21: the question has no XXXXX"):
        cbt.load(wrong)
    notcbt = tmp_path / "other.txt"
    notcbt.write_text("hello world\n", "utf-8")
    with pytest.raises(Gpt2Error, match=r"other.txt: line 1: expected line 1"):
        cbt.load(notcbt)


# ----------------------------------------------------------------------------------- winograd

WSC_XML = """<?xml version="1.0" encoding="UTF-8"?>
<collection>
<schema>
  <text>
    <txt1>The city councilmen refused the demonstrators a permit because</txt1>
    <pron>they</pron>
    <txt2>feared violence.</txt2>
  </text>
  <quote><quote1></quote1><pron>they</pron><quote2>feared violence.</quote2></quote>
  <answers>
    <answer>The city councilmen</answer>
    <answer>The demonstrators</answer>
  </answers>
  <correctAnswer>A</correctAnswer>
  <source>(Winograd 1972)</source>
</schema>
<schema>
  <text>
    <txt1>Joan made sure to thank Susan for all the help</txt1>
    <pron>she</pron>
    <txt2>had given.</txt2>
  </text>
  <answers><answer>Joan</answer><answer>Susan</answer></answers>
  <correctAnswer> B. </correctAnswer>
</schema>
<schema>
  <text>
    <txt1>The man lifted the boy onto</txt1>
    <pron>his</pron>
    <txt2>shoulders.</txt2>
  </text>
  <answers><answer>The man</answer><answer>The boy</answer></answers>
  <correctAnswer>A</correctAnswer>
</schema>
</collection>
"""


def test_winograd_requests_partial_and_full(tmp_path):
    data = tmp_path / "WSCollection.xml"
    data.write_text(WSC_XML, "utf-8")
    schemas = winograd.load(data)
    assert len(schemas) == 3
    assert schemas[0].text() == (
        "The city councilmen refused the demonstrators a permit because they feared violence."
    )
    assert [s.gold for s in schemas] == [0, 1, 0]
    # lm-eval's normalisation: lower-case "The" mid-sentence, "'s" after a possessive
    assert schemas[2].option("The man") == "the man's"

    # partial scores favour the right answers on schemas 1 and 3; full scores only on 2
    partial = {
        "the city councilmen": -1,
        "the demonstrators": -2,
        "Joan": -1,
        "Susan": -2,
        "the man's": -1,
        "the boy's": -3,
    }
    full = {
        "the city councilmen": -5,
        "the demonstrators": -4,
        "Joan": -6,
        "Susan": -5,
        "the man's": -4,
        "the boy's": -3,
    }

    def score(context, continuation):
        if context == "":
            return next(v for k, v in full.items() if f" {k} " in continuation)
        return next(v for k, v in partial.items() if context.endswith(" " + k))

    lm = FakeLM(score)
    result = get_task("winograd").evaluate(lm, data, EvalOptions())
    assert lm.requests[0] == (
        "The city councilmen refused the demonstrators a permit because the city councilmen",
        " feared violence.",
    )
    assert ("The man lifted the boy onto the boy's", " shoulders.") in lm.requests
    assert ("", "The man lifted the boy onto the man's shoulders.") in lm.requests
    # lm-eval 0.4's wsc273 continuation: " " + text after the pronoun (two spaces)
    assert ("The man lifted the boy onto the man's", "  shoulders.") in lm.requests
    assert result.metrics["acc_lm_eval"].value == pytest.approx(2 / 3)
    assert result.n == 3
    assert result.metrics["acc"].value == pytest.approx(2 / 3)
    assert result.metrics["acc_full"].value == pytest.approx(1 / 3)
    assert result.metrics["acc"].stderr == pytest.approx(_se([1, 0, 1]))


def test_winograd_bad_input(tmp_path):
    truncated = tmp_path / "WSCollection.xml"
    truncated.write_text(WSC_XML[:700], "utf-8")
    with pytest.raises(Gpt2Error, match=r"WSCollection.xml: line \d+: not well-formed XML"):
        winograd.load(truncated)
    bad = tmp_path / "bad.xml"
    bad.write_text(
        WSC_XML.replace("<correctAnswer>A</correctAnswer>", "<correctAnswer>Q</correctAnswer>", 1),
        "utf-8",
    )
    with pytest.raises(Gpt2Error, match=r"bad.xml: line 3: schema 1: bad <correctAnswer>"):
        winograd.load(bad)


# ------------------------------------------------------------------- on a tiny random model


@pytest.fixture(scope="module")
def tiny_lm():
    import torch

    from gpt2cli.evaluate.language_model import LanguageModel
    from gpt2cli.model.gpt import GPT, config_for_size

    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = config_for_size("tiny")
    model = GPT(config).eval()
    return LanguageModel(model, block_size=config.block_size, batch_size=8)


def test_choice_tasks_on_a_tiny_model(tmp_path, tiny_lm):
    """The real LanguageModel: acc equals the argmax of its own scores, computed here."""
    data = _write_jsonl(tmp_path / "hellaswag_val.jsonl", HELLASWAG)
    result = get_task("hellaswag").evaluate(tiny_lm, data, EvalOptions())
    examples = hellaswag.load(data)
    expected = []
    for query, endings, gold in examples:
        scores = [ll for ll, _ in tiny_lm.loglikelihood([(query, " " + e) for e in endings])]
        expected.append(float(max(range(len(scores)), key=lambda i: (scores[i], -i)) == gold))
    assert result.metrics["acc"].value == pytest.approx(sum(expected) / len(expected))

    wsc = tmp_path / "WSCollection.xml"
    wsc.write_text(WSC_XML, "utf-8")
    result = get_task("winograd").evaluate(tiny_lm, wsc, EvalOptions(limit=2))
    assert result.n == 2 and 0 <= result.metrics["acc_full"].value <= 1

    cbt_file = tmp_path / "cbtest_CN_valid_2000ex.txt"
    cbt_file.write_text(_cbt_example("cat", CANDIDATES, "The XXXXX sat ."), "utf-8")
    result = get_task("cbt-cn").evaluate(tiny_lm, cbt_file, EvalOptions())
    assert result.n == 1 and result.metrics["acc"].value in (0.0, 1.0)


def test_winograd_reads_the_published_latin1_encoding(tmp_path):
    # the published WSCollection.xml declares ISO-8859-1 and has a stylesheet line
    xml = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n'
        '<?xml-stylesheet type="text/xsl" href="WSExample.xsl"?>\n<collection>\n<schema>\n'
        "<text>\n<txt1>\nThe older students were bullying the younger ones at the caf\xe9, "
        "so we punished \n</txt1>\n<pron>them</pron><txt2>.</txt2>\n</text>\n<answers>\n"
        "<answer>The older students </answer>\n<answer>the younger ones </answer>\n"
        "</answers>\n<correctAnswer> A </correctAnswer>\n</schema>\n</collection>\n"
    )
    data = tmp_path / "WSCollection.xml"
    data.write_bytes(xml.encode("latin-1"))
    [schema] = winograd.load(data)
    assert schema.text() == (
        "The older students were bullying the younger ones at the café, so we punished them."
    )
    assert schema.prefix() + schema.option(schema.answers[1]) == (
        "The older students were bullying the younger ones at the café, so we punished "
        "the younger ones"
    )
    assert schema.rest == "."
    with pytest.raises(Gpt2Error, match="no such file"):
        winograd.load(tmp_path / "absent.xml")


# ------------------------------------------------------------------------ through the CLI


def _run_cli(*args, cwd=None):
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "gpt2cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    import torch

    from gpt2cli.model import hf
    from gpt2cli.model.gpt import GPT, config_for_size

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny-model")
    hf.save_pretrained(GPT(config_for_size("tiny")), directory)
    return directory


def test_choice_tasks_through_gpt2_eval(tmp_path, tiny_model_dir):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _write_jsonl(data_dir / "hellaswag_val.jsonl", HELLASWAG)
    (data_dir / "WSCollection.xml").write_text(WSC_XML, "utf-8")
    (data_dir / "cbtest_CN_valid_2000ex.txt").write_text(
        _cbt_example("cat", CANDIDATES, "The XXXXX sat .") * 2, "utf-8"
    )
    proc = _run_cli(
        "eval",
        "hellaswag",
        "winograd",
        "cbt-cn",
        "--model",
        str(tiny_model_dir),
        "--data-dir",
        str(data_dir),
        "--limit",
        "2",
        "--json",
        "--device",
        "cpu",
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert set(results["results"]) == {"hellaswag", "winograd", "cbt-cn"}
    for task, metrics in (
        ("hellaswag", ("acc", "acc_norm")),
        ("winograd", ("acc", "acc_full")),
        ("cbt-cn", ("acc",)),
    ):
        for metric in metrics:
            assert results["results"][task][f"{metric},none"] in (0.0, 0.5, 1.0)
    assert results["n-samples"]["winograd"]["effective"] == 2

    # a truncated file: one line naming the file and the line, exit 1
    (data_dir / "hellaswag_val.jsonl").write_text(json.dumps(HELLASWAG[0]) + '\n{"ctx', "utf-8")
    proc = _run_cli(
        "eval",
        "hellaswag",
        "--model",
        str(tiny_model_dir),
        "--data-dir",
        str(data_dir),
        "--device",
        "cpu",
    )
    assert proc.returncode == 1
    assert "hellaswag_val.jsonl: line 2: truncated JSON" in proc.stderr
    assert "Traceback" not in proc.stderr


# ------------------------------------------- fidelity with lm-evaluation-harness (opt-in)

_LMEVAL_TASK = """task: hellaswag_local
dataset_path: json
dataset_kwargs:
  data_files:
    validation: {data}
output_type: multiple_choice
validation_split: validation
process_docs: !function utils.process_docs
doc_to_text: "{{{{query}}}}"
doc_to_target: "{{{{label}}}}"
doc_to_choice: "choices"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""

_LMEVAL_RUN = """import json, sys, lm_eval
from lm_eval.tasks import TaskManager
model, tasks, out = sys.argv[1:]
r = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={model},tokenizer={model},"
    "dtype=float32", tasks=["hellaswag_local"], task_manager=TaskManager(include_path=tasks),
    device="cpu", batch_size=4, log_samples=True)
res = r["results"]["hellaswag_local"]
samples = sorted(r["samples"]["hellaswag_local"], key=lambda s: s["doc_id"])
json.dump({"acc": res["acc,none"], "acc_norm": res["acc_norm,none"],
           "acc_norm_se": res["acc_norm_stderr,none"],
           "lls": [x[0] for s in samples for x in s["filtered_resps"]]}, open(out, "w"))
"""


def _tiny_hf_model(model_dir: Path, seed: int) -> Path:
    """A random 2-layer GPT-2 saved in Hugging Face layout, with the GPT-2 tokenizer."""
    import torch

    from gpt2cli.model import hf
    from gpt2cli.model.gpt import GPT, GPTConfig

    torch.manual_seed(seed)
    # a complete HF repository: the tokenizer files come with the weights
    hf.save_pretrained(GPT(GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=256)), model_dir)
    return model_dir


def _run_lm_eval(tmp_path: Path, script: str, model_dir: Path, tasks: Path) -> dict:
    """Run ``script`` (model, tasks folder, out.json) under lm-eval's python, offline; its
    JSON output."""
    import os
    import subprocess

    (tmp_path / "run.py").write_text(script)
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    subprocess.run(
        [
            os.environ["GPT2CLI_LMEVAL_PYTHON"],
            str(tmp_path / "run.py"),
            str(model_dir),
            str(tasks),
            str(tmp_path / "out.json"),
        ],
        check=True,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=600,
    )
    return json.loads((tmp_path / "out.json").read_text())


@pytest.mark.skipif(
    not __import__("os").environ.get("GPT2CLI_LMEVAL_PYTHON"),
    reason="set GPT2CLI_LMEVAL_PYTHON to a python with lm-eval 0.4 installed",
)
def test_hellaswag_equals_lm_eval(tmp_path):
    """Same tiny model, same file: per-choice log-likelihoods, acc and acc_norm equal lm-eval
    0.4's ``hellaswag`` (run through a local-file copy of its task config)."""

    from gpt2cli.evaluate.language_model import LanguageModel

    model_dir = _tiny_hf_model(tmp_path / "model", seed=1)
    rows = HELLASWAG + [
        {
            "activity_label": "Café visit",
            "ctx_a": "Les amis vont au café [title] ici.",
            "ctx_b": "they order",
            "endings": ["crème brûlée.", "coffee.", "nothing [step] at all.", "a très  grand thé."],
            "label": 2,
        },
    ]
    data = _write_jsonl(tmp_path / "hellaswag_val.jsonl", rows)
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "utils.py").write_text("from lm_eval.tasks.hellaswag.utils import process_docs\n")
    (tasks / "hs.yaml").write_text(_LMEVAL_TASK.format(data=data))
    theirs = _run_lm_eval(tmp_path, _LMEVAL_RUN, model_dir, tasks)

    lm = LanguageModel.load(str(model_dir), device="cpu", dtype="fp32")
    ours_lls: list[float] = []
    plain = lm.loglikelihood
    lm.loglikelihood = lambda requests: [ours_lls.append(r[0]) or r for r in plain(requests)]
    result = get_task("hellaswag").evaluate(lm, data, EvalOptions())
    assert ours_lls == pytest.approx(theirs["lls"], abs=1e-4)
    assert result.metrics["acc"].value == pytest.approx(theirs["acc"], abs=1e-4)
    assert result.metrics["acc_norm"].value == pytest.approx(theirs["acc_norm"], abs=1e-4)
    assert result.metrics["acc_norm"].stderr == pytest.approx(theirs["acc_norm_se"], abs=1e-4)


_LMEVAL_WSC_RUN = """import json, sys, lm_eval
from lm_eval.tasks import TaskManager
model, tasks, out = sys.argv[1:]
r = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={model},tokenizer={model},"
    "dtype=float32", tasks=["wsc273_local"], task_manager=TaskManager(include_path=tasks),
    device="cpu", batch_size=4, log_samples=True)
samples = sorted(r["samples"]["wsc273_local"], key=lambda s: s["doc_id"])
json.dump({"acc": r["results"]["wsc273_local"]["acc,none"],
           "requests": [list(map(list, s["arguments"])) for s in samples],
           "lls": [x[0] for s in samples for x in s["filtered_resps"]]}, open(out, "w"))
"""


@pytest.mark.skipif(
    not __import__("os").environ.get("GPT2CLI_LMEVAL_PYTHON"),
    reason="set GPT2CLI_LMEVAL_PYTHON to a python with lm-eval 0.4 installed",
)
def test_winograd_acc_lm_eval_equals_lm_eval(tmp_path):
    """acc_lm_eval equals lm-eval 0.4's wsc273 (its own task files, fed the fields the Hugging
    Face winograd_wsc builder makes from the same XML)."""
    import os
    import subprocess
    import xml.etree.ElementTree as ET

    from gpt2cli.evaluate.language_model import LanguageModel

    model_dir = _tiny_hf_model(tmp_path / "model", seed=2)
    xml = tmp_path / "WSCollection.xml"
    xml.write_text(WSC_XML, "utf-8")
    rows = []
    for schema in ET.fromstring(WSC_XML):  # the HF builder's fields
        text = schema.find("text")
        left, right, pron = (
            " ".join((text.findtext(t) or "").split()) for t in ("txt1", "txt2", "pron")
        )
        rows.append(
            {
                "text": " ".join([left, pron, right]).strip(),
                "pronoun": pron,
                "pronoun_loc": len(left) + 1 if left else 0,
                "options": [" ".join(a.text.split()) for a in schema.iter("answer")],
                "label": int("B" in schema.findtext("correctAnswer")),
            }
        )
    data = _write_jsonl(tmp_path / "wsc.jsonl", rows)
    python = os.environ["GPT2CLI_LMEVAL_PYTHON"]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    where = subprocess.run(
        [python, "-c", "import lm_eval, os; print(os.path.dirname(lm_eval.__file__))"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout.strip()
    source = Path(where) / "tasks" / "wsc273"
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "utils.py").write_text((source / "utils.py").read_text())
    config = [
        line
        for line in (source / "default.yaml").read_text().splitlines()
        if not line.startswith(("dataset_path", "dataset_name", "task:"))
    ]
    (tasks / "wsc.yaml").write_text(
        "task: wsc273_local\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n" + "\n".join(config) + "\n"
    )
    theirs = _run_lm_eval(tmp_path, _LMEVAL_WSC_RUN, model_dir, tasks)

    lm = LanguageModel.load(str(model_dir), device="cpu", dtype="fp32")
    schemas = winograd.load(xml)
    ours = [list(s.lm_eval_request(a)) for s in schemas for a in s.answers]
    assert ours == [request for doc in theirs["requests"] for request in doc]
    result = get_task("winograd").evaluate(lm, xml, EvalOptions())
    assert result.metrics["acc_lm_eval"].value == pytest.approx(theirs["acc"], abs=1e-4)
    lls = [ll for ll, _ in lm.loglikelihood([tuple(r) for r in ours])]
    assert lls == pytest.approx(theirs["lls"], abs=1e-4)
