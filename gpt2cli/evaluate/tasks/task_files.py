"""Finding a task's data files: --data, --data-dir, the cache, and --download.

Lookup order for each of a task's :class:`~gpt2cli.evaluate.tasks.base.DataFile`:

1. ``--data FILE`` (one task at a time; for a task that reads a directory, a directory);
2. ``--data-dir DIR/<published name>`` (a name may hold a folder, as in
   ``wikitext-2-raw/wiki.test.raw``, the layout the published archive unpacks to);
3. the cache, ``$XDG_CACHE_HOME/gpt2cli/<published name>`` (``~/.cache/gpt2cli`` by default);
4. with ``--download``: fetched from the file's public URL into the cache (shown with
   progress), its sha256 checked when the published checksum is fixed; a mismatch deletes the
   download. A URL may point at a zip archive: ``DataFile.archive_member`` names the member
   to take (the checksum is then the archive's).

A task's file whose own sha256 is published but differs gets a warning after the run, which says
when the only difference is CRLF line endings (the tasks read text with LF line endings, as
published).

``GPT2CLI_DATA_MIRROR=URL`` fetches ``URL/<published name or archive name>`` instead of the
published URL (a local mirror; the tests use one on 127.0.0.1).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from gpt2cli import console
from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.evaluate.tasks.base import DataFile, Task
from gpt2cli.fileio import sha256_file

MIRROR_ENV = "GPT2CLI_DATA_MIRROR"
CHUNK = 1 << 20


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gpt2cli"


def _where_to_get(task: Task, data_file: DataFile) -> str:
    hint = f"get it from {data_file.source}"
    if data_file.url:
        hint += ", or pass --download to fetch it into " + str(cache_dir())
    return hint + f", then pass --data FILE or --data-dir DIR holding {data_file.name}"


def resolve(
    task: Task,
    data: Path | None = None,
    data_dir: Path | None = None,
    download: bool = False,
) -> Path:
    """The path evaluate() gets: the first data file, or the directory holding all of them."""
    if not task.data_files:
        return data or data_dir or cache_dir()
    if data is not None:
        if not data.exists():
            raise Gpt2Error(f"{data}: no such file", f"{task.name} reads {task.data_files[0].name}")
        if task.data_is_dir and not data.is_dir():
            raise UsageError(
                f"{task.name} reads a directory holding "
                + ", ".join(f.name for f in task.data_files),
                "pass --data-dir DIR (or --data DIR)",
            )
        if not task.data_is_dir and data.is_dir():
            raise UsageError(f"--data {data} is a directory", "pass --data-dir for a directory")
        return data
    found: list[Path] = []
    for data_file in task.data_files:
        found.append(_find_or_fetch(task, data_file, data_dir, download))
    if task.data_is_dir:
        parents = {_root_of(path, f.name) for path, f in zip(found, task.data_files)}
        if len(parents) != 1:
            raise Gpt2Error(
                f"{task.name}: its files are in different places: "
                + ", ".join(str(p) for p in found),
                "put them into one directory and pass --data-dir",
            )
        return parents.pop()
    return found[0]


def _sha256_lf(path: Path) -> str:
    """sha256 of the file with every CRLF read as LF."""
    digest = hashlib.sha256()
    carry = b""
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            block = carry + block
            carry = b"\r" if block.endswith(b"\r") else b""
            digest.update(block[: len(block) - len(carry)].replace(b"\r\n", b"\n"))
    digest.update(carry)
    return digest.hexdigest()


def check_published(task: Task, path: Path, actual: str) -> None:
    """Warn when the task's file, of sha256 ``actual``, is not its published file of known
    sha256, saying when the only difference is CRLF line endings (which the tasks read as LF,
    as published)."""
    data_file = task.data_files[0] if task.data_files and not task.data_is_dir else None
    expected = data_file.sha256 if data_file and data_file.archive_member is None else None
    if data_file is None or expected is None or actual == expected:
        return
    if _sha256_lf(path) == expected:
        console.warn(
            "eval",
            f"{path} differs from the published {data_file.name} only in its line endings "
            "(CRLF): read with LF line endings, as published",
        )
        return
    console.warn(
        "eval",
        f"{path} is not the published {data_file.name} (sha256 {actual}, published "
        f"{expected}): its figures are not comparable with published ones",
    )


def _root_of(path: Path, name: str) -> Path:
    root = path
    for _ in Path(name).parts:
        root = root.parent
    return root


def _find_or_fetch(task: Task, data_file: DataFile, data_dir: Path | None, download: bool) -> Path:
    places = ([data_dir] if data_dir is not None else []) + [cache_dir()]
    for place in places:
        candidate = place / data_file.name
        if candidate.is_file():
            return candidate
    if download:
        return fetch(data_file)
    looked = " or ".join(str(place / data_file.name) for place in places)
    raise Gpt2Error(
        f"{task.name}: data file {data_file.name} not found (looked in {looked})",
        _where_to_get(task, data_file),
    )


def _url_for(data_file: DataFile) -> str:
    assert data_file.url is not None
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        return mirror.rstrip("/") + "/" + data_file.url.rstrip("/").rsplit("/", 1)[-1]
    return data_file.url


def fetch(data_file: DataFile, destination: Path | None = None) -> Path:
    """Download ``data_file`` into the cache (or ``destination`` directory); return its path."""
    if not data_file.url:
        raise Gpt2Error(
            f"{data_file.name} has no public download URL",
            f"get it from {data_file.source} and pass --data or --data-dir",
        )
    root = destination or cache_dir()
    target = root / data_file.name
    target.parent.mkdir(parents=True, exist_ok=True)
    url = _url_for(data_file)
    handle, temp_name = tempfile.mkstemp(prefix=".download-", dir=target.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            _download(url, out, data_file)
        if data_file.sha256:
            actual = sha256_file(temp)
            if actual != data_file.sha256:
                temp.unlink(missing_ok=True)
                raise Gpt2Error(
                    f"checksum mismatch for {data_file.name} downloaded from {url}: sha256 "
                    f"{actual}, expected {data_file.sha256}; the download was deleted",
                    f"try again later, or get it from {data_file.source}",
                )
        member = data_file.archive_member
        if member is not None:
            _extract(temp, member, target, data_file)
            temp.unlink(missing_ok=True)
        else:
            os.replace(temp, target)
    finally:
        if temp.exists():
            temp.unlink()
    console.info(f"gpt2 eval: downloaded {data_file.name} to {target}")
    return target


def _download(url: str, out, data_file: DataFile) -> None:
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "gpt2cli"})
        with urllib.request.urlopen(request, timeout=60) as response:
            total = response.headers.get("Content-Length")
            with console.progress(transient=True) as bar:
                task = bar.add_task(
                    f"download {data_file.name}", total=int(total) if total else None, status=""
                )
                while block := response.read(CHUNK):
                    out.write(block)
                    bar.advance(task, len(block))
    except urllib.error.HTTPError as error:
        raise Gpt2Error(
            f"cannot download {data_file.name} from {url}: HTTP {error.code}",
            f"get it from {data_file.source}",
        ) from None
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        reason = getattr(error, "reason", error)
        raise Gpt2Error(
            f"cannot download {data_file.name} from {url} ({reason})",
            f"offline? get it from {data_file.source} and pass --data or --data-dir",
        ) from None


def _extract(archive: Path, member: str, target: Path, data_file: DataFile) -> None:
    try:
        with zipfile.ZipFile(archive) as zipped, zipped.open(member) as source:
            handle, temp_name = tempfile.mkstemp(prefix=".extract-", dir=target.parent)
            with os.fdopen(handle, "wb") as out:
                shutil.copyfileobj(source, out, CHUNK)
            os.replace(temp_name, target)
    except (zipfile.BadZipFile, KeyError) as error:
        raise Gpt2Error(
            f"the download for {data_file.name} is not the expected archive ({error})",
            f"get it from {data_file.source}",
        ) from None
