"""Detokenizers: turn whitespace-tokenized benchmark text back into ordinary text.

``wikitext_detokenizer`` is lm-evaluation-harness's (``lm_eval/tasks/wikitext/
preprocess_wikitext.py``, itself from Megatron-LM), character for character, so word
perplexities match lm-eval's. ``ptb_detokenizer`` is Megatron-LM's zero-shot PTB
detokenizer, except that ``N`` becomes `` 1 `` (Megatron's "1 " glues it to the word
before). ``onebw_detokenizer`` undoes the One Billion Word tokenization of punctuation.
"""

from __future__ import annotations

import re


def wikitext_detokenizer(string: str) -> str:
    # contractions
    string = string.replace("s '", "s'")
    string = re.sub(r"/' [0-9]/", r"/'[0-9]/", string)
    # number separators
    string = string.replace(" @-@ ", "-")
    string = string.replace(" @,@ ", ",")
    string = string.replace(" @.@ ", ".")
    # punctuation
    string = string.replace(" : ", ": ")
    string = string.replace(" ; ", "; ")
    string = string.replace(" . ", ". ")
    string = string.replace(" ! ", "! ")
    string = string.replace(" ? ", "? ")
    string = string.replace(" , ", ", ")
    # double brackets
    string = re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", string)
    string = re.sub(r"\[\s*([^\]]*?)\s*\]", r"[\1]", string)
    string = re.sub(r"{\s*([^}]*?)\s*}", r"{\1}", string)
    string = re.sub(r"\"\s*([^\"]*?)\s*\"", r'"\1"', string)
    string = re.sub(r"'\s*([^']*?)\s*'", r"'\1'", string)
    # miscellaneous
    string = string.replace("= = = =", "====")
    string = string.replace("= = =", "===")
    string = string.replace("= =", "==")
    string = string.replace(" " + chr(176) + " ", chr(176))
    string = string.replace(" \n", "\n")
    string = string.replace("\n ", "\n")
    string = string.replace(" N ", " 1 ")
    string = string.replace(" 's", "'s")
    return string


def ptb_detokenizer(string: str) -> str:
    string = string.replace(" '", "'")
    string = string.replace(" \n", "\n")
    string = string.replace("\n ", "\n")
    string = string.replace(" n't", "n't")
    string = string.replace(" N ", " 1 ")  # Megatron writes "1 " here, gluing "the1"
    string = string.replace("$ 1", "$1")
    string = string.replace("# 1", "#1")
    return string


def onebw_detokenizer(string: str) -> str:
    string = string.replace("http : / / ", "http://").replace("https : / / ", "https://")
    string = re.sub(r" '(\w+)", r"'\1", string)
    string = re.sub(r" n't\b", "n't", string)
    for mark in (".", ",", ":", ";", "?", "!"):
        string = string.replace(f" {mark} ", f"{mark} ")
        if string.endswith(f" {mark}"):
            string = string[:-2] + mark
    string = re.sub(r"\" ([^\"]+) \"", r'"\1"', string)
    string = re.sub(r"\( ([^()]+) \)", r"(\1)", string)
    string = re.sub(r"\[ ([^\[\]]+) \]", r"[\1]", string)
    string = string.replace("$ ", "$").replace("£ ", "£")
    return string
