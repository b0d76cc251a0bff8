"""`eval --cache DIR` that cannot be written is refused before the evaluation runs (its
results would be lost after it), as -o and --log-samples are."""

from __future__ import annotations

from pathlib import Path


def test_an_unusable_cache_directory_is_refused_before_any_work(gpt2, tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("not a directory\n")
    for cache, message in [
        (file, f"--cache {file}: is a file, not a directory"),
        (file / "cache", f"--cache {file}/cache: {file} is a file, not a directory"),
    ]:
        # the model does not exist: the cache is judged before the model is even looked for
        run = gpt2("eval", "lambada", "--model", tmp_path / "no-model", "--cache", cache)
        assert run.code == 1
        assert run.stderr.strip().splitlines() == [f"gpt2 eval: error: {message}"]
