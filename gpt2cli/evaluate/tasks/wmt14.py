"""WMT14 English-French translation, newstest2014, both directions (as the GPT-2 paper).

Data: the SGML files of newstest2014, en-fr pair:

- ``wmt14-en-fr``: ``newstest2014-fren-src.en.sgm`` (source) and
  ``newstest2014-fren-ref.fr.sgm`` (reference);
- ``wmt14-fr-en``: ``newstest2014-fren-src.fr.sgm`` and ``newstest2014-fren-ref.en.sgm``.

Files of these names are in both published archives of the WMT14 test sets:
``test-filtered.tgz`` (directory ``test/``; sacrebleu's ``-t wmt14``) and ``test-full.tgz``
(directory ``test-full/``, 3,003 segments; sacrebleu's ``-t wmt14/full``), both at
www.statmt.org/wmt14/. Report which one you used. Segments are read as sacrebleu reads
them: each line starting with ``<seg `` gives its text between the tags, whitespace collapsed
(entities are not unescaped). Both files go in one directory (``--data-dir``).

Prompt, as the paper (section 3.7): "a context of example pairs of the format english sentence
= french sentence and then after a final prompt of english sentence =". The example pairs are
five fixed sentence pairs written for this tool (``EXAMPLES``, not from any WMT set), one per
line, "<source> = <target>"; then "<source> =". The translation is generated greedily until a
newline (at most 2 × the source's token count + 16 tokens, capped at 256) and stripped.

Metric: ``bleu``, corpus BLEU from ``sacrebleu.BLEU()`` with its defaults, the same as
``sacrebleu.corpus_bleu`` (13a tokenisation, exp smoothing, mixed case), on sacrebleu's 0-100
scale; the sacrebleu signature goes in the results. No standard error (corpus-level).
"""

from __future__ import annotations

import re
from pathlib import Path

from gpt2cli.evaluate import sample_log
from gpt2cli.evaluate.tasks._taskio import read_text
from gpt2cli.evaluate.tasks.base import DataFile, EvalOptions, Metric, Task, TaskResult, data_error
from gpt2cli.text.tokenizer import encode

EXAMPLES = (
    ("The cat is sleeping on the sofa.", "Le chat dort sur le canapé."),
    ("I would like a cup of coffee, please.", "Je voudrais une tasse de café, s'il vous plaît."),
    (
        "The meeting has been postponed until next week.",
        "La réunion a été reportée à la semaine prochaine.",
    ),
    ("She has lived in Paris for ten years.", "Elle habite à Paris depuis dix ans."),
    (
        "The government announced new measures on Tuesday.",
        "Le gouvernement a annoncé de nouvelles mesures mardi.",
    ),
)
MAX_TOKENS_CAP = 256
_SEG = re.compile(r"<seg.*?>(.*)</seg>.*?")
_SPACES = re.compile(r"\s+")
_SOURCE = (
    "the WMT14 test sets, www.statmt.org/wmt14/test-filtered.tgz (test/) or "
    "www.statmt.org/wmt14/test-full.tgz (test-full/)"
)


def read_sgm(path: Path) -> list[str]:
    """The segments of an SGML file, in order, as sacrebleu extracts them."""
    segments = []
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        if line.startswith("<seg "):
            if "</seg>" not in line:
                raise data_error(path, number, "a <seg> without its </seg> (truncated file?)")
            segments.append(_SPACES.sub(" ", _SEG.sub(r"\1", line).strip()))
    if not segments:
        raise data_error(path, None, "no <seg> lines: expected a WMT .sgm file")
    return segments


def prompt_for(source: str, english_first: bool) -> str:
    pairs = EXAMPLES if english_first else [(fr, en) for en, fr in EXAMPLES]
    return "".join(f"{a} = {b}\n" for a, b in pairs) + f"{source} ="


class Wmt14(Task):
    version = 1.0
    paper_metric = "bleu"
    data_is_dir = True

    def __init__(self, source_lang: str, target_lang: str) -> None:
        self.source_lang, self.target_lang = source_lang, target_lang
        self.name = f"wmt14-{source_lang}-{target_lang}"
        names = {"en": "English", "fr": "French"}
        self.description = (
            f"WMT14 newstest2014 {names[source_lang]} to {names[target_lang]} translation, BLEU"
        )
        self.data_files = (
            DataFile(f"newstest2014-fren-src.{source_lang}.sgm", None, None, _SOURCE),
            DataFile(f"newstest2014-fren-ref.{target_lang}.sgm", None, None, _SOURCE),
        )

    def evaluate(self, lm, data: Path, options: EvalOptions) -> TaskResult:
        import sacrebleu

        limit = options.limit
        directory = data if data.is_dir() else data.parent
        src_path, ref_path = (directory / f.name for f in self.data_files)
        sources, references = read_sgm(src_path), read_sgm(ref_path)
        if len(sources) != len(references):
            raise data_error(
                ref_path,
                None,
                f"{len(references)} segments, but {src_path.name} has {len(sources)}",
            )
        if limit is not None:
            sources, references = sources[:limit], references[:limit]
        english_first = self.source_lang == "en"
        hypotheses: list[str] = []
        outputs: list[str] = []
        step = max(1, options.batch_size)
        for start in range(0, len(sources), step):
            chunk = sources[start : start + step]
            max_tokens = min(MAX_TOKENS_CAP, max(2 * len(encode(s)) + 16 for s in chunk))
            chunk_outputs = lm.generate(
                [prompt_for(s, english_first) for s in chunk],
                max_tokens=max_tokens,
                until=["\n"],
                greedy=True,
                seed=options.seed,
            )
            outputs.extend(chunk_outputs)
            hypotheses.extend(o.split("\n")[0].strip() for o in chunk_outputs)
        metric = sacrebleu.BLEU()  # the defaults of sacrebleu.corpus_bleu
        bleu = metric.corpus_score(hypotheses, [references])
        return TaskResult(
            metrics={"bleu": Metric(float(bleu.score), None, True)},
            n=len(sources),
            extra={"sacrebleu": str(bleu), "signature": str(metric.get_signature())},
            samples=[
                sample_log.generation(doc_id, prompt_for(s, english_first), o, r, h)
                for doc_id, (s, o, r, h) in enumerate(zip(sources, outputs, references, hypotheses))
            ],
        )


TASKS = [Wmt14("en", "fr"), Wmt14("fr", "en")]
