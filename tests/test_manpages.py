"""man/ is generated from the CLI's own command tree; it must not drift, and must render cleanly."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tools import manpage

MAN = Path(__file__).resolve().parent.parent / "man"


def test_man_pages_match_the_cli() -> None:
    pages = manpage.generate()
    on_disk = {path.name for path in MAN.glob("*.1")}
    assert on_disk == set(pages), "man/ is stale: run `python tools/manpage.py man/`"
    for name, text in pages.items():
        assert (MAN / name).read_text(encoding="utf-8") == text, (
            f"man/{name} is stale: run `python tools/manpage.py man/`"
        )


def test_every_subcommand_has_a_page_with_the_required_sections() -> None:
    pages = manpage.generate()
    from gpt2cli.commands import COMMANDS

    for command in COMMANDS:
        text = pages[f"gpt2-{command}.1"]
        for section in (
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "EXIT STATUS",
            "ENVIRONMENT",
            "FILES",
            "EXAMPLES",
            "SEE ALSO",
        ):
            assert f".SH {section}" in text, (command, section)


@pytest.mark.skipif(
    shutil.which("man") is None and shutil.which("groff") is None,
    reason="neither man nor groff is installed",
)
@pytest.mark.parametrize("page", sorted(p.name for p in MAN.glob("*.1")))
def test_page_renders_without_warnings(page: str) -> None:
    env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80")
    if shutil.which("man"):
        command = ["man", "--warnings", "-l", str(MAN / page)]
    else:
        command = ["groff", "-man", "-Tutf8", "-ww", "-z", str(MAN / page)]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0
    assert result.stderr.strip() == ""
