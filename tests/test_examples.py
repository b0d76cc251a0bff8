"""Every script in examples/ runs at tiny scale, so none can rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _web_files import dump_bytes, submission, write_crawl, write_zst

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TINY_BATCH = {"SEQ_LEN": "32", "BATCH": "4", "MICRO_BATCH": "4", "DEVICE": "cpu"}
TINY_TRAIN = {"SIZE": "tiny", **TINY_BATCH}


def run_example(script: str, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, OMP_NUM_THREADS="1", NO_COLOR="1", **env)
    bin_dir = str(Path(sys.executable).parent)
    environment["PATH"] = bin_dir + os.pathsep + environment.get("PATH", "")
    result = subprocess.run(
        ["bash", str(EXAMPLES / script), *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{script} failed:\n{result.stderr[-4000:]}"
    return result


def run_into_out(script: str, tmp_path: Path, *inputs: Path, **env: str) -> Path:
    """Run ``script INPUTS... OUT`` in ``tmp_path`` with OUT = ``tmp_path/out``; OUT."""
    out = tmp_path / "out"
    run_example(script, *map(str, inputs), str(out), cwd=tmp_path, **env)
    return out


def gpt2_process(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """`gpt2 ARGS` in a fresh interpreter, output captured."""
    return subprocess.run([sys.executable, "-m", "gpt2cli", *args], capture_output=True, **kwargs)


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    return path


def corpus_texts(count: int) -> list[str]:
    words = "the model reads every shard of the corpus and learns what comes next".split()
    return [" ".join(words[(i + j) % len(words)] for j in range(60 + i)) for i in range(count)]


def tiny_hf_model(directory: Path) -> Path:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=64)
    transformers.GPT2LMHeadModel(config).save_pretrained(directory)
    return directory


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.sh")))
def test_examples_print_usage_and_refuse_bad_arguments(script: str, tmp_path: Path) -> None:
    help_run = subprocess.run(
        ["bash", str(EXAMPLES / script), "--help"], capture_output=True, text=True, cwd=tmp_path
    )
    assert help_run.returncode == 0 and "usage" in help_run.stdout.lower() + help_run.stderr.lower()
    if script != "quickstart.sh":
        bad = subprocess.run(
            ["bash", str(EXAMPLES / script)], capture_output=True, text=True, cwd=tmp_path
        )
        assert bad.returncode == 2


def test_quickstart_runs_the_whole_pipeline(tmp_path: Path) -> None:
    work = tmp_path / "qs"
    settings = dict(
        WORK=str(work),
        STEPS="4",
        MAX_FILES="3",
        EVAL_EVERY="2",
        LAMBADA="5",
        **TINY_BATCH,
    )
    result = run_example("quickstart.sh", cwd=tmp_path, **settings)
    for name in (
        "shards/manifest.yaml",
        "run/final/COMPLETE",
        "run/loss.png",
        "sample.txt",
        "scores.jsonl",
        "results.json",
        "overlap.json",
        "train.bloom",
        "filter.json",
        "dedup.json",
        "corpus/prose.jsonl",
    ):
        assert (work / name).exists(), name
    assert "val loss:" in result.stdout and "eval lambada" in result.stdout
    # the prose is kept and the code dropped: every .py source fails a rule
    prose = [json.loads(line)["name"] for line in open(work / "corpus/prose.jsonl")]
    assert prose and all(not name.endswith(".py") or ":" in name for name in prose)
    assert "corpus filter:" in result.stdout and "corpus dedup:" in result.stdout
    # prose documents come as extracted web text: a paragraph per line, no code blocks
    written = [json.loads(line) for line in open(work / "corpus/train.jsonl")]
    prose_lines = [
        line
        for row in written
        if row["name"].startswith(("pydoc_data:", "docstrings:"))
        for line in row["text"].split("\n")
    ]
    assert prose_lines and not [line for line in prose_lines if line[:1].isspace()]
    assert not [line for line in prose_lines if line.startswith(">>>")]
    # Running it again replaces its own work directory; another directory is refused.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    refused = subprocess.run(
        ["bash", str(EXAMPLES / "quickstart.sh")],
        cwd=tmp_path,
        env=dict(os.environ, WORK=str(tmp_path / "other")),
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 1 and (tmp_path / "other" / "keep.txt").exists()


def test_openwebtext_builds_parts_in_parallel_and_trains(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    texts = corpus_texts(12)
    write_jsonl(corpus / "a.jsonl", texts[:6])
    write_jsonl(corpus / "b.jsonl", texts[6:])
    out = run_into_out(
        "openwebtext.sh", tmp_path, corpus, JOBS="2", VAL_TOKENS="100", STEPS="2", **TINY_TRAIN
    )
    manifest = (out / "shards/manifest.yaml").read_text()
    assert "part-00000" in manifest and "part-00001" in manifest
    assert (out / "run/final/COMPLETE").exists()


def test_finetune_round_trips_through_hugging_face(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    weights = tiny_hf_model(tmp_path / "weights")
    data = write_jsonl(tmp_path / "data.jsonl", corpus_texts(20))
    run_example(
        "finetune.sh",
        str(weights),
        str(data),
        str(tmp_path / "ft"),
        cwd=tmp_path,
        STEPS="2",
        **TINY_BATCH,
    )
    model = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "ft/hf")
    assert model.config.n_layer == 2


def test_reproduce_table3_writes_results_and_a_table(tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    tiny_hf_model(weights / "tiny")
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "lambada_test.jsonl", corpus_texts(4))
    out = run_into_out(
        "reproduce-table3.sh",
        tmp_path,
        weights,
        data,
        MODELS="tiny",
        TASKS="lambada",
        LIMIT="3",
        DEVICE="cpu",
    )
    results = json.loads((out / "tiny.json").read_text())
    assert "acc,none" in results["results"]["lambada"]
    table = (out / "table3.md").read_text()
    assert "| lambada | acc |" in table and "45.99" in table


def test_decontaminate_drops_overlapping_documents(tmp_path: Path) -> None:
    texts = corpus_texts(8)
    train_a = write_jsonl(tmp_path / "a.jsonl", texts[:4])
    write_jsonl(tmp_path / "-b.jsonl", texts[4:6])  # names that look like options
    fresh = "completely different words about gardens rivers and mountains in spring " * 3
    write_jsonl(tmp_path / "-test.jsonl", [texts[0], fresh])
    run_example(
        "decontaminate.sh",
        str(tmp_path / "out"),
        str(train_a),
        "-b.jsonl",
        "--",
        "-test.jsonl",
        cwd=tmp_path,
        JOBS="2",
    )
    kept = (tmp_path / "out/-test.jsonl.clean").read_text().splitlines()
    assert [json.loads(line)["text"] for line in kept] == [fresh]


def test_multinode_and_slurm_run_torchrun_on_one_node(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", corpus_texts(10))
    shards = tmp_path / "shards"
    tokens = gpt2_process("tokenize", str(corpus), check=True).stdout
    gpt2_process("pack", "-o", str(shards), "--val-tokens", "100", input=tokens, check=True)
    config = tmp_path / "run.yaml"
    config.write_text(
        f"size: tiny\ndata: {shards}\noutput: {tmp_path / 'run'}\ndevice: cpu\n"
        "seq_len: 32\nbatch_size: 4\nmicro_batch: 2\nmax_steps: 2\n"
    )
    run_example(
        "multinode.sh",
        str(config),
        cwd=tmp_path,
        NPROC_PER_NODE="2",
        RDZV_ENDPOINT="localhost:29561",
    )
    assert (tmp_path / "run/final/COMPLETE").exists()
    # Outside Slurm the batch script runs multinode.sh on this node; flags override the config.
    run_example(
        "slurm.sbatch",
        str(config),
        "-o",
        str(tmp_path / "run2"),
        cwd=tmp_path,
        NPROC_PER_NODE="1",
        PORT="29562",
    )
    assert (tmp_path / "run2/final/COMPLETE").exists()


STORIES = [
    "The harbour was quiet in the early morning, and the fishing boats rocked gently against "
    "the stone wall while the gulls waited on the roofs. An old man sat on a barrel mending "
    "his nets, and he told anyone who stopped that the weather would turn before the evening. "
    "Nobody believed him, because the sky was clear and the sea was as flat as a plate.",
    "By noon the wind had changed direction, and the first clouds came in low over the hills. "
    "The children who had been swimming off the rocks were called home, and the shopkeepers "
    "carried their tables and chairs inside. When the rain finally arrived it was heavy and "
    "warm, and the streets ran with water down to the harbour for the rest of the day.",
    "The library in the middle of the town had been built with money from a merchant who "
    "could not read. He wanted his grandchildren to have the books that he never had, and he "
    "asked that the doors should stay open until late at night so that workers could come "
    "after their shifts. For more than a century the lamps have burned in its windows.",
    "Every autumn the volunteers who look after the library hold a sale of the books that "
    "nobody has borrowed for ten years. The money pays for new shelves and for the heating "
    "in the reading room, where students spend the winter evenings with their notes. Some of "
    "the oldest books are never sold, because the town has decided that they belong to it.",
]
GERMAN_STORY = (
    "Der Hafen war am frühen Morgen ruhig, und die Fischerboote schaukelten sanft an der "
    "steinernen Mauer, während die Möwen auf den Dächern warteten. Ein alter Mann saß auf "
    "einem Fass und flickte seine Netze, und er erzählte jedem, der stehen blieb, dass sich "
    "das Wetter vor dem Abend ändern würde. Niemand glaubte ihm, denn der Himmel war klar."
)


def _page(title: str, paragraphs: list[str]) -> bytes:
    body = "".join(f"<p>{p}</p>\n" for p in paragraphs)
    return (
        f"<!DOCTYPE html><html><head><title>{title}</title></head><body><nav><a href='/'>Home"
        f"</a></nav><article><h1>{title}</h1>\n{body}</article><footer>Copyright 2019 Example"
        f"</footer></body></html>"
    ).encode()


def test_webtext_runs_links_to_shards(tmp_path: Path) -> None:
    has_links = gpt2_process("corpus", "links", "--help")
    if has_links.returncode != 0:
        pytest.skip("gpt2 corpus links and extract are not in this build")
    pytest.importorskip("fastwarc")
    near_copy = STORIES[0].replace("old man", "old fisherman").replace("evening", "night")
    pages = {
        "http://harbour.example.com/story": ([STORIES[0], STORIES[1]], 10),
        "https://library.example.org/history": ([STORIES[2], STORIES[3]], 5),
        "http://copies.example.net/harbour": ([near_copy, STORIES[1]], 4),
        "http://hafen.example.de/": ([GERMAN_STORY, GERMAN_STORY.upper()], 6),
        "http://short.example.com/": (["The harbour was quiet and the boats were still."], 8),
        "https://en.wikipedia.org/wiki/Harbour": ([STORIES[3], STORIES[0]], 50),
        "http://unpopular.example.com/": ([STORIES[1], STORIES[2]], 1),
    }
    dump, crawl = tmp_path / "RS_2019-01.zst", tmp_path / "crawl.warc.gz"
    submissions = [submission(url, karma, 1546300800 + i) for i, (url, (_, karma)) in
                   enumerate(pages.items())]  # fmt: skip
    write_zst(dump, dump_bytes(submissions))
    write_crawl(crawl, [(url, _page(url, texts)) for url, (texts, _) in pages.items()])
    out = tmp_path / "out"
    result = run_example(
        "webtext.sh", str(out), str(dump), "--", str(crawl), cwd=tmp_path, JOBS="1",
        DEDUP_PARTS="2",
    )  # fmt: skip
    kept = [json.loads(line) for line in (out / "webtext.jsonl").read_text().splitlines()]
    assert [record["url"] for record in kept] == [
        "http://harbour.example.com/story",
        "https://library.example.org/history",
    ]
    rejected = {
        json.loads(line)["url"]: json.loads(line)["rejected_by"]
        for line in (out / "rejected.jsonl").read_text().splitlines()
    }
    # links normalised the urls (no trailing slash)
    assert rejected == {"http://hafen.example.de": "lang", "http://short.example.com": "min-tokens"}
    (removed,) = [json.loads(line) for line in (out / "duplicates.jsonl").read_text().splitlines()]
    assert removed["url"] == "http://copies.example.net/harbour" and removed["reason"] == "near"
    assert (out / "shards/manifest.yaml").exists() and "webtext.jsonl: 2 documents" in result.stdout
    # the staged dedup on 2 parts gave what one process gives
    one = gpt2_process("corpus", "dedup", "--keep", "karma", str(out / "clean.jsonl"), check=True)
    assert one.stdout == (out / "webtext.jsonl").read_bytes()


def test_webtext_fetches_the_links_from_loopback_servers(tmp_path: Path) -> None:
    """links → fetch → extract → filter → dedup → tokenize | pack, the pages served by real
    HTTP servers on 127.0.0.x (one host each), robots.txt and all."""
    pytest.importorskip("aiohttp")
    from _loopback_web import Site, page

    near_copy = STORIES[0].replace("old man", "old fisherman").replace("evening", "night")
    sites = [Site(f"127.0.0.{n}") for n in range(2, 7)]
    harbour, library, copies, german, encyclopedia = sites
    try:
        harbour.routes.update({
            "/story": page(_page("Harbour", [STORIES[0], STORIES[1]])),
            "/short": page(_page("Short", ["The harbour was quiet and the boats were still."])),
            "/robots.txt": page("User-agent: *\nDisallow: /private\n", "text/plain"),
            "/private": page(_page("Private", [STORIES[2], STORIES[3]])),
        })  # fmt: skip
        library.routes["/history"] = page(_page("History", [STORIES[2], STORIES[3]]))
        copies.routes["/harbour"] = page(_page("Copy", [near_copy, STORIES[1]]))
        german.routes["/hafen"] = page(_page("Hafen", [GERMAN_STORY, GERMAN_STORY.upper()]))
        encyclopedia.routes["/wiki"] = page(_page("Wiki", [STORIES[3], STORIES[0]]))
        links = {
            harbour.url("/story"): 10, library.url("/history"): 5, copies.url("/harbour"): 4,
            german.url("/hafen"): 6, harbour.url("/short"): 8, encyclopedia.url("/wiki"): 50,
            harbour.url("/private"): 7, library.url("/missing"): 9,
        }  # fmt: skip
        dump = tmp_path / "RS_2019-01.zst"
        write_zst(dump, dump_bytes([submission(url, karma, 1546300800 + i)
                                    for i, (url, karma) in enumerate(links.items())]))  # fmt: skip
        out = tmp_path / "out"
        result = run_example(
            "webtext.sh", str(out), str(dump), cwd=tmp_path, JOBS="1",
            EXCLUDE=encyclopedia.address, FETCH_OPTIONS="--allow-private --delay 0",
        )  # fmt: skip
    finally:
        for site in sites:
            site.close()
    kept = [json.loads(line) for line in (out / "webtext.jsonl").read_text().splitlines()]
    # in the crawl's order (hosts interleaved), not the links'
    assert sorted((record["url"], record["karma"]) for record in kept) == sorted(
        [(harbour.url("/story"), 10), (library.url("/history"), 5)]
    )
    fetched = {json.loads(line)["url"]: json.loads(line)
               for line in (out / "crawl/fetch.jsonl").read_text().splitlines()}  # fmt: skip
    assert fetched[harbour.url("/private")]["error"] == "robots_disallowed"
    assert fetched[library.url("/missing")]["status"] == 404
    assert encyclopedia.url("/wiki") not in fetched and encyclopedia.hits == {}
    assert harbour.hits["/robots.txt"] == 1 and "/private" not in harbour.hits
    assert "fetch: 7 in, 5 out" in result.stdout
    assert (out / "shards/manifest.yaml").exists() and "webtext.jsonl: 2 documents" in result.stdout
