"""Generation tasks (coqa, nq, cnndm, wmt14): prompts, answer extraction, metrics by hand.

A fake language model returns fixed generations; each metric is checked against a hand
computation (or, for BLEU, against sacrebleu on the hypotheses the task must have produced).
"""

from __future__ import annotations

import json
import math

import pytest

from gpt2cli.errors import Gpt2Error
from gpt2cli.evaluate.tasks import cnndm, coqa, get_task, nq, wmt14
from gpt2cli.evaluate.tasks.base import EvalOptions


class FakeLM:
    """generate() from a function of the prompt; records every call's arguments."""

    block_size = 1024

    def __init__(self, answer) -> None:
        self.answer = answer
        self.calls: list[dict] = []

    def generate(self, prompts, max_tokens, until=(), greedy=True, top_k=None, seed=0):
        self.calls.append(
            dict(
                prompts=list(prompts),
                max_tokens=max_tokens,
                until=list(until),
                greedy=greedy,
                top_k=top_k,
                seed=seed,
            )
        )
        return [self.answer(p) for p in prompts]


def _evaluate(name, data, answer, **options):
    """Task `name` run on `data` by a FakeLM answering with `answer`: the LM and the result."""
    lm = FakeLM(answer)
    return lm, get_task(name).evaluate(lm, data, EvalOptions(**options))


def _question(prompt, end):
    """What follows the prompt's last "Q: ", up to `end`."""
    return prompt.rsplit("Q: ", 1)[1].split(end)[0]


def _se(values):
    n = len(values)
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


# --------------------------------------------------------------------------------------- coqa

COQA = {
    "version": "1.0",
    "data": [
        {
            "source": "wikipedia",
            "id": "s1",
            "filename": "x.txt",
            "story": "Tom has a red car. He drives it to work.",
            "questions": [
                {"input_text": "What color is the car?", "turn_id": 1},
                {"input_text": "Where does he drive?", "turn_id": 2},
            ],
            "answers": [
                {"input_text": "a red car", "turn_id": 1, "span_text": "a red car"},
                {"input_text": "to work", "turn_id": 2},
            ],
            "additional_answers": {
                "0": [{"input_text": "red", "turn_id": 1}, {"input_text": "work", "turn_id": 2}],
                "1": [
                    {"input_text": "blue car", "turn_id": 1},
                    {"input_text": "To work.", "turn_id": 2},
                ],
            },
        },
        {
            "source": "race",
            "id": "s2",
            "story": "Nothing happens.",
            "questions": [{"input_text": "Who?", "turn_id": 1}],
            "answers": [{"input_text": "unknown", "turn_id": 1}],
        },
    ],
}


def test_coqa_f1_hand_computed():
    assert coqa.f1_score("The red car!", "red car") == 1.0
    assert coqa.f1_score("red", "red car") == pytest.approx(2 / 3)  # p 1/2, r 1
    assert coqa.f1_score("blue car", "red car") == pytest.approx(1 / 2)
    assert coqa.f1_score("the", "") == 1.0  # both empty after normalisation
    assert coqa.f1_score("x", "") == 0.0
    # leave-one-out over 3 golds: max(2/3, 1/2), max(1, 1/2), max(1, 2/3) -> mean 8/9
    em, f1 = coqa.turn_scores(["a red car", "red", "blue car"], "the red car")
    assert f1 == pytest.approx(8 / 9)
    assert em == pytest.approx(2 / 3)


def test_coqa_prompts_and_metric(tmp_path):
    data = tmp_path / "coqa-dev-v1.0.json"
    data.write_text(json.dumps(COQA), "utf-8")
    answers = {
        "What color is the car?": " the red car\nQ: more",
        "Where does he drive?": " to work",
        "Who?": " Tom",
    }
    lm, result = _evaluate("coqa", data, lambda p: answers[_question(p, "\n")])
    [call] = lm.calls
    assert call["until"] == ["\n"] and call["greedy"] is True
    assert call["prompts"] == [
        "Tom has a red car. He drives it to work.\n\nQ: What color is the car?\nA:",
        "Tom has a red car. He drives it to work.\n\nQ: What color is the car?\nA: a red car\n"
        "Q: Where does he drive?\nA:",
        "Nothing happens.\n\nQ: Who?\nA:",
    ]
    # turn 1: 8/9 (above); turn 2: "to work" vs [to work, work, To work.] -> (1 + 1 + 1)/3
    # (leave-one-out keeps an exact match each time); turn 3: "Tom" vs "unknown" -> 0
    f1s = [8 / 9, 1.0, 0.0]
    assert result.n == 3
    assert result.metrics["f1"].value == pytest.approx(sum(f1s) / 3)
    assert result.metrics["f1"].stderr == pytest.approx(_se(f1s))
    assert result.metrics["em"].value == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert result.extra["stories"] == 2
    limited = get_task("coqa").evaluate(lm, data, EvalOptions(limit=2))
    assert limited.n == 2 and limited.extra["stories"] == 1


def test_coqa_bad_input(tmp_path):
    text = json.dumps(COQA, indent=1)
    truncated = tmp_path / "coqa-dev-v1.0.json"
    truncated.write_text(text[: len(text) // 2], "utf-8")
    with pytest.raises(Gpt2Error, match=r"coqa-dev-v1.0.json: line \d+: truncated JSON"):
        coqa.load(truncated)
    broken = json.loads(text)
    del broken["data"][1]["answers"]
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(broken, indent=1), "utf-8")
    with pytest.raises(Gpt2Error, match=r"wrong.json: line \d+: story 2 \(s2\): missing field"):
        coqa.load(wrong)


# ----------------------------------------------------------------------------------------- nq


def test_nq_prompt_and_exact_match(tmp_path):
    data = tmp_path / "NQ-open.dev.jsonl"
    rows = [
        {"question": "where is the eiffel tower", "answer": ["Paris", "Paris, France"]},
        {"question": "who painted the mona lisa", "answer": ["Leonardo da Vinci"]},
        {"question": "when did ww2 end", "answer": ["1945"]},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    outputs = {
        "where is the eiffel tower": " Paris, France.",
        "who painted the mona lisa": " The Leonardo da Vinci",
        "when did ww2 end": " in 1945",
    }
    lm, result = _evaluate("nq", data, lambda p: outputs[_question(p, "?\nA:")])
    prompt = lm.calls[0]["prompts"][0]
    assert prompt.startswith("Q: who wrote the novel pride and prejudice?\nA: Jane Austen\n\n")
    assert prompt.endswith("\n\nQ: where is the eiffel tower?\nA:")
    assert lm.calls[0]["until"] == ["\n"] and lm.calls[0]["greedy"] is True
    # "Paris, France." matches "Paris, France"; "The Leonardo da Vinci" matches after removing
    # the article; "in 1945" does not match "1945"
    assert result.metrics["exact_match"].value == pytest.approx(2 / 3)
    assert result.metrics["exact_match"].stderr == pytest.approx(_se([1, 1, 0]))
    assert nq.exact_match("", ["x"]) == 0.0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "not a list"}\n', "utf-8")
    with pytest.raises(Gpt2Error, match=r"bad.jsonl: line 1: field 'answer' should be list"):
        nq.load(bad)


# -------------------------------------------------------------------------------------- cnndm


def test_first_sentences():
    text = 'He said "stop." Then it rained! Why? Not this one.'
    assert cnndm.first_sentences(text) == 'He said "stop." Then it rained! Why?'
    assert (
        cnndm.first_sentences("one line\nsecond line\nthird\nfourth")
        == "one line second line third"
    )
    assert cnndm.first_sentences("  no end") == "no end"
    assert cnndm.first_sentences("") == ""


def test_cnndm_prompt_generation_and_rouge(tmp_path):
    data = tmp_path / "cnndm_test.jsonl"
    rows = [
        {"article": "Cats. A long story about cats.", "highlights": "the cat sat", "id": "1"},
        {"article": "Letters.", "highlights": "a b c\nd e f"},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    outputs = {
        "Cats. A long story about cats.\nTL;DR:": " the cat ran",
        "Letters.\nTL;DR:": " a b. c d. e f. g h i j.",
    }
    lm, result = _evaluate("cnndm", data, lambda p: outputs[p], seed=7)
    [call] = lm.calls
    assert (call["max_tokens"], call["top_k"], call["greedy"], call["seed"]) == (100, 2, False, 7)
    # 1: "the cat ran" vs "the cat sat": R1 2/3, R2 1/2 (the cat), RL 2/3 (LCS "the cat")
    # 2: first 3 sentences "a b. c d. e f." vs "a b c d e f": all 1
    r1, r2, rl = (2 / 3 + 1) / 2, (1 / 2 + 1) / 2, (2 / 3 + 1) / 2
    assert result.metrics["rouge1"].value == pytest.approx(r1)
    assert result.metrics["rouge2"].value == pytest.approx(r2)
    assert result.metrics["rougeL"].value == pytest.approx(rl)
    assert result.metrics["rouge_avg"].value == pytest.approx((r1 + r2 + rl) / 3)
    assert result.metrics["rouge1"].stderr == pytest.approx(_se([2 / 3, 1]))


def test_cnndm_article_cut_to_fit():
    article = "word " * 2000
    prompt = cnndm.prompt_for(article, block_size=1024)
    assert prompt.endswith("\nTL;DR:") and prompt.startswith("word word")
    from gpt2cli.text.tokenizer import encode

    assert len(encode(prompt)) <= 1024 - 100


# -------------------------------------------------------------------------------------- wmt14


def _sgm(lines: list[str], lang: str) -> str:
    segs = "".join(f'<seg id="{i}">{t}</seg>\n' for i, t in enumerate(lines, start=1))
    return (
        f'<srcset setid="newstest2014" srclang="any">\n<doc sysid="ref" docid="1" '
        f'genre="news" origlang="{lang}">\n<p>\n{segs}</p>\n</doc>\n</srcset>\n'
    )


EN = ["The house is small.", "I  love  music.", "We will see tomorrow."]
FR = ["La maison est petite.", "J'aime la musique.", "Nous verrons demain."]


def test_wmt14_prompts_and_bleu(tmp_path):
    import sacrebleu

    (tmp_path / "newstest2014-fren-src.en.sgm").write_text(_sgm(EN, "en"), "utf-8")
    (tmp_path / "newstest2014-fren-ref.fr.sgm").write_text(_sgm(FR, "fr"), "utf-8")
    (tmp_path / "newstest2014-fren-src.fr.sgm").write_text(_sgm(FR, "fr"), "utf-8")
    (tmp_path / "newstest2014-fren-ref.en.sgm").write_text(_sgm(EN, "en"), "utf-8")
    assert wmt14.read_sgm(tmp_path / "newstest2014-fren-src.en.sgm")[1] == "I love music."

    perfect = dict(zip([" ".join(e.split()) for e in EN], FR))
    lm, result = _evaluate(
        "wmt14-en-fr",
        tmp_path,
        lambda p: " " + perfect[p.rsplit("\n", 1)[1][:-2]] + "\nextra line",
        batch_size=2,
    )
    assert result.n == 3 and result.metrics["bleu"].value == pytest.approx(100.0)
    assert result.metrics["bleu"].stderr is None
    assert [len(c["prompts"]) for c in lm.calls] == [2, 1]
    prompt = lm.calls[0]["prompts"][0]
    assert prompt.startswith("The cat is sleeping on the sofa. = Le chat dort sur le canapé.\n")
    assert prompt.endswith("\nThe house is small. =")
    assert lm.calls[0]["until"] == ["\n"] and lm.calls[0]["greedy"] is True

    # fr -> en, one sentence wrong: BLEU equals sacrebleu's on the extracted hypotheses
    answers = {
        "La maison est petite.": "The house is small.",
        "J'aime la musique.": "I like music.",
        "Nous verrons demain.": "We will see tomorrow.",
    }
    lm, result = _evaluate(
        "wmt14-fr-en",
        tmp_path / "newstest2014-fren-src.fr.sgm",
        lambda p: " " + answers[p.rsplit("\n", 1)[1][:-2]],
        limit=2,
    )
    assert lm.calls[0]["prompts"][0].startswith("Le chat dort sur le canapé. = The cat is")
    expected = sacrebleu.corpus_bleu(
        ["The house is small.", "I like music."], [["The house is small.", "I love music."]]
    ).score
    assert result.n == 2 and result.metrics["bleu"].value == pytest.approx(expected)
    assert 0 < expected < 100


def test_wmt14_bad_input(tmp_path):
    (tmp_path / "newstest2014-fren-src.en.sgm").write_text(_sgm(EN, "en"), "utf-8")
    with pytest.raises(Gpt2Error, match="newstest2014-fren-ref.fr.sgm: no such file"):
        get_task("wmt14-en-fr").evaluate(FakeLM(str), tmp_path, EvalOptions())
    (tmp_path / "newstest2014-fren-ref.fr.sgm").write_text(_sgm(FR[:2], "fr"), "utf-8")
    with pytest.raises(Gpt2Error, match="2 segments, but newstest2014-fren-src.en.sgm has 3"):
        get_task("wmt14-en-fr").evaluate(FakeLM(str), tmp_path, EvalOptions())
    cut = tmp_path / "cut.sgm"
    cut.write_text(_sgm(EN, "en")[:150], "utf-8")
    with pytest.raises(Gpt2Error, match=r"cut.sgm: line 5: a <seg> without its </seg>"):
        wmt14.read_sgm(cut)
    plain = tmp_path / "plain.sgm"
    plain.write_text("just text\n", "utf-8")
    with pytest.raises(Gpt2Error, match="plain.sgm: no <seg> lines"):
        wmt14.read_sgm(plain)


# ------------------------------------------------------------------- on a tiny random model


def test_generation_tasks_on_a_tiny_model(tmp_path):
    import torch

    from gpt2cli.evaluate.language_model import LanguageModel
    from gpt2cli.model.gpt import GPT, config_for_size

    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = config_for_size("tiny")
    lm = LanguageModel(GPT(config).eval(), block_size=config.block_size)

    data = tmp_path / "NQ-open.dev.jsonl"
    data.write_text('{"question": "where is paris", "answer": ["France"]}\n', "utf-8")
    result = get_task("nq").evaluate(lm, data, EvalOptions())
    assert result.n == 1 and result.metrics["exact_match"].value == 0.0

    data = tmp_path / "cnndm_test.jsonl"
    data.write_text(
        json.dumps({"article": "A cat sat. " * 50, "highlights": "A cat sat."}) + "\n", "utf-8"
    )
    result = get_task("cnndm").evaluate(lm, data, EvalOptions(seed=3))
    assert result.n == 1 and 0 <= result.metrics["rouge_avg"].value <= 1


# ------------------------------------------------------------------------ through the CLI


def test_generation_tasks_through_gpt2_eval(tmp_path):
    import os
    import subprocess
    import sys

    import torch

    from gpt2cli.model import hf
    from gpt2cli.model.gpt import GPT, config_for_size

    torch.manual_seed(0)
    model_dir = tmp_path / "model"
    hf.save_pretrained(GPT(config_for_size("tiny")), model_dir)
    data = tmp_path / "data"
    data.mkdir()
    (data / "NQ-open.dev.jsonl").write_text(
        '{"question": "where is paris", "answer": ["France"]}\n', "utf-8"
    )
    (data / "coqa-dev-v1.0.json").write_text(json.dumps(COQA), "utf-8")
    (data / "newstest2014-fren-src.en.sgm").write_text(_sgm(EN, "en"), "utf-8")
    (data / "newstest2014-fren-ref.fr.sgm").write_text(_sgm(FR, "fr"), "utf-8")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NO_COLOR="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpt2cli",
            "eval",
            "nq",
            "coqa",
            "wmt14-en-fr",
            "--model",
            str(model_dir),
            "--data-dir",
            str(data),
            "--limit",
            "1",
            "--json",
            "--device",
            "cpu",
            "-o",
            str(tmp_path / "results.json"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert results["results"]["nq"]["exact_match,none"] == 0.0
    assert 0.0 <= results["results"]["coqa"]["f1,none"] <= 1.0
    assert 0.0 <= results["results"]["wmt14-en-fr"]["bleu,none"] <= 100.0
    assert results["n-samples"]["coqa"]["effective"] == 1
    assert json.loads((tmp_path / "results.json").read_text())["results"] == results["results"]
