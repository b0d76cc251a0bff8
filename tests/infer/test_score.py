"""gpt2 score and the scoring core: windows, per-token log-probs against full forwards by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gpt2cli.evaluate.language_model import LanguageModel
from gpt2cli.infer import scoring
from gpt2cli.text import token_stream
from gpt2cli.text.tokenizer import EOT, encode

transformers = pytest.importorskip("transformers")
torch.set_num_threads(1)
BLOCK = 32


def tiny_hf(block: int = BLOCK, seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        n_layer=2, n_head=2, n_embd=64, n_positions=block, vocab_size=50257, initializer_range=0.1
    )
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def hf_model():
    return tiny_hf()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, hf_model) -> Path:
    directory = tmp_path_factory.mktemp("score") / "tiny"
    hf_model.save_pretrained(directory)
    return directory


def full_logprobs(model, inputs: list[int], targets: list[int]) -> np.ndarray:
    """log p(targets[i] | inputs[:i+1]) from one full forward."""
    with torch.no_grad():
        logits = model(torch.tensor([inputs])).logits[0].double()
    logprobs = torch.log_softmax(logits, dim=-1)
    return logprobs[torch.arange(len(targets)), torch.tensor(targets)].numpy()


# ---------------------------------------------------------------- windows


def lm_eval_rolling(tokens: list[int], prefix: int, max_len: int) -> list[tuple[list, list]]:
    """lm-evaluation-harness's get_rolling_token_windows(context_len=1) + make_disjoint_window,
    written out from its definition."""
    out = []
    if not tokens:
        return out
    pred_len = max_len
    first = min(max_len, len(tokens))
    out.append(([prefix] + tokens[: first - 1], tokens[:first]))
    predicted = first
    while predicted < len(tokens):
        window_pred = min(len(tokens) - predicted, pred_len)
        end = predicted + window_pred
        out.append((tokens[end - max_len - 1 : end - 1], tokens[end - window_pred : end]))
        predicted += window_pred
    disjoint = []
    for context, continuation in out:
        disjoint.append((context[: len(context) - (len(continuation) - 1)], continuation))
    return disjoint


@pytest.mark.parametrize("length", [1, 2, 31, 32, 33, 64, 65, 100, 257])
def test_default_windows_are_lm_evals(length: int) -> None:
    tokens = list(range(1000, 1000 + length))
    full = [EOT] + tokens
    ours = scoring.windows(len(full), 1, BLOCK)
    theirs = lm_eval_rolling(tokens, EOT, BLOCK)
    assert len(ours) == len(theirs)
    for span, (context, continuation) in zip(ours, theirs):
        inputs = full[span.start : span.end]
        # lm-eval feeds (context + continuation)[-(max_len+1):][:-1] and scores the last ones
        assert inputs == (context + continuation)[-(BLOCK + 1) :][:-1]
        assert full[span.end - span.n_scored + 1 : span.end + 1] == continuation


@pytest.mark.parametrize("stride", [None, 1, 5, 16, 31, 32])
@pytest.mark.parametrize("length", [1, 30, 33, 100])
def test_every_token_scored_once_with_enough_context(stride: int | None, length: int) -> None:
    spans = scoring.windows(length + 1, 1, BLOCK, stride)
    scored = []
    for span in spans:
        assert 0 < span.end - span.start <= BLOCK
        assert 1 <= span.n_scored <= span.end - span.start
        for target in range(span.end - span.n_scored + 1, span.end + 1):
            scored.append(target)
            if span is not spans[0]:
                assert target - span.start >= BLOCK - (stride or BLOCK)
    assert scored == list(range(1, length + 1))


def test_windows_reject_bad_arguments() -> None:
    with pytest.raises(ValueError):
        scoring.windows(10, 1, 8, stride=9)
    with pytest.raises(ValueError):
        scoring.windows(10, 0, 8)
    assert scoring.windows(5, 5, 8) == []


# ---------------------------------------------------------------- numbers by hand


def test_short_document_equals_one_full_forward(hf_model) -> None:
    ids = encode("The quick brown fox jumps over the lazy dog, again and again.")
    assert len(ids) < BLOCK
    hand = full_logprobs(hf_model, [EOT] + ids[:-1], ids)
    got = scoring.score_documents(hf_model, [ids], BLOCK)[0]
    np.testing.assert_allclose(got.logprobs, hand, atol=1e-4)


@pytest.mark.parametrize("stride", [None, 8])
def test_long_document_rolling_nll_by_hand(hf_model, stride: int | None) -> None:
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 50257, 100).tolist()
    full = [EOT] + ids
    hand = np.zeros(len(ids))
    # By hand: each token's log-prob from a full forward over the context the rule gives it.
    for span in scoring.windows(len(full), 1, BLOCK, stride):
        inputs = full[span.start : span.end]
        targets = full[span.start + 1 : span.end + 1]
        lp = full_logprobs(hf_model, inputs, targets)
        hand[span.end - span.n_scored : span.end] = lp[-span.n_scored :]
    got = scoring.score_documents(
        hf_model, [ids], BLOCK, scoring.ScoringSettings(batch_size=3, stride=stride)
    )[0]
    np.testing.assert_allclose(got.logprobs, hand, atol=1e-4)
    # the last window of the default scheme sees a full block of context
    last = scoring.windows(len(full), 1, BLOCK, stride)[-1]
    assert last.end - last.start == BLOCK


def test_batching_does_not_change_scores(hf_model) -> None:
    rng = np.random.default_rng(2)
    documents = [rng.integers(0, 50257, n).tolist() for n in (0, 3, 40, 7, 90, 1)]
    one = scoring.score_documents(hf_model, documents, BLOCK, scoring.ScoringSettings(1))
    many = scoring.score_documents(hf_model, documents, BLOCK, scoring.ScoringSettings(7))
    packed = scoring.score_documents(
        hf_model, documents, BLOCK, scoring.ScoringSettings(1, token_budget=2 * BLOCK)
    )
    for a, b, c, doc in zip(one, many, packed, documents):
        assert len(a.logprobs) == len(doc)
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)
        np.testing.assert_allclose(a.logprobs, c.logprobs, atol=1e-4)


def test_token_budget_packs_short_windows() -> None:
    lengths = [32, 32, 10, 10, 10, 10, 10, 10, 10, 3]
    order = list(range(len(lengths)))
    assert list(scoring._batches(order, lengths, 2, None)) == [
        [0, 1],
        [2, 3],
        [4, 5],
        [6, 7],
        [8, 9],
    ]
    assert list(scoring._batches(order, lengths, 2, 64)) == [[0, 1], [2, 3, 4, 5, 6, 7], [8, 9]]


def test_loglikelihood_greedy_and_truncation(hf_model) -> None:
    lm = LanguageModel(hf_model, BLOCK)
    context, continuation = "alpha beta gamma", " delta"
    ctx_ids, cont_ids = lm.encode_pair(context, continuation)
    whole = ctx_ids + cont_ids
    lp = full_logprobs(hf_model, whole[:-1], whole[1:])[-len(cont_ids) :]
    with torch.no_grad():
        logits = hf_model(torch.tensor([whole[:-1]])).logits[0]
    greedy = all(int(logits[len(ctx_ids) - 1 + i].argmax()) == t for i, t in enumerate(cont_ids))
    ((ll, is_greedy),) = lm.loglikelihood([(context, continuation)])
    assert ll == pytest.approx(float(lp.sum()), abs=1e-4)
    assert is_greedy == greedy
    # A context longer than the block is cut from the left: the same as scoring its tail.
    long_context = " ".join(["word"] * 80)
    ((ll_long, _),) = lm.loglikelihood([(long_context, " end")])
    c_ids, x_ids = lm.encode_pair(long_context, " end")
    tail = (c_ids + x_ids)[-(BLOCK + 1) :]
    expected = full_logprobs(hf_model, tail[:-1], tail[1:])[-len(x_ids) :].sum()
    assert ll_long == pytest.approx(float(expected), abs=1e-4)
    # trailing spaces move to the continuation, as lm-eval does
    assert lm.encode_pair("a b ", "c") == lm.encode_pair("a b", " c")
    assert lm.encode_pair("", "x")[0] == [EOT]


def test_document_metrics_empty_and_values() -> None:
    empty = scoring.document_metrics(0.0, 0, 0, 0, 0)
    assert empty.ppl is None and empty.bits_per_byte is None and empty.word_ppl is None
    m = scoring.document_metrics(10.0, 5, 20, 20, 4)
    assert m.ppl == pytest.approx(math.exp(2.0))
    assert m.bits_per_byte == pytest.approx(10.0 / 20 / math.log(2))
    assert m.word_ppl == pytest.approx(math.exp(2.5))


# ---------------------------------------------------------------- the command


def test_score_command(model_dir: Path, hf_model, tmp_path: Path, gpt2) -> None:
    texts = ["Hello world, this is a test of scoring.", "", "word " * 40]
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    result = gpt2(
        "score", "--model", str(model_dir), "--per-token", "--summary", "-b", "2", str(source)
    )
    assert result.code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert len(lines) == 4
    for text, record in zip(texts, lines):
        ids = encode(text)
        assert record["tokens"] == len(ids)
        assert record["characters"] == len(text)
        assert record["bytes"] == len(text.encode())
        assert record["words"] == len(text.split())
        assert [t["id"] for t in record["per_token"]] == ids
        assert sum(t["logprob"] for t in record["per_token"]) == pytest.approx(
            -record["nll"], abs=1e-6
        )
        if ids:
            hand = -scoring.score_documents(hf_model, [ids], BLOCK)[0].total
            assert record["nll"] == pytest.approx(hand, abs=1e-3)
            assert record["ppl"] == pytest.approx(math.exp(hand / len(ids)), rel=1e-5)
            assert record["bits_per_byte"] == pytest.approx(
                hand / len(text.encode()) / math.log(2), rel=1e-5
            )
    empty = lines[1]
    assert empty["tokens"] == 0 and empty["nll"] == 0.0
    assert empty["ppl"] is None and empty["bits_per_byte"] is None and empty["word_ppl"] is None
    summary = lines[-1]
    assert summary["summary"] is True and summary["documents"] == 3
    assert summary["tokens"] == sum(r["tokens"] for r in lines[:3])
    assert summary["nll"] == pytest.approx(sum(r["nll"] for r in lines[:3]))
    assert "gpt2 score: 3 documents" in result.stderr

    # A token stream of the same documents scores the same.
    stream = tmp_path / "docs.tok"
    stream.write_bytes(
        token_stream.HEADER + b"".join(token_stream.encode_document(encode(t)) for t in texts)
    )
    again = gpt2("score", "--model", str(model_dir), str(stream), "--stride", "8")
    assert again.code == 0, again.stderr
    strided = [json.loads(line) for line in again.stdout.decode().splitlines()]
    assert [r["tokens"] for r in strided] == [r["tokens"] for r in lines[:3]]
    assert strided[0]["nll"] == pytest.approx(lines[0]["nll"], abs=1e-3)  # fits in one window


def test_score_bad_input(model_dir: Path, tmp_path: Path, gpt2) -> None:
    source = tmp_path / "a.txt"
    source.write_text("some text\n")
    bad_stride = gpt2("score", "--model", str(model_dir), "--stride", "33", str(source))
    assert bad_stride.code == 2
    assert "--stride" in bad_stride.stderr and "Traceback" not in bad_stride.stderr
    missing = gpt2("score", "--model", str(tmp_path / "nope"), str(source))
    assert missing.code == 1 and "Traceback" not in missing.stderr
    no_file = gpt2("score", "--model", str(model_dir), str(tmp_path / "absent.txt"))
    assert no_file.code == 1 and "absent.txt" in no_file.stderr
