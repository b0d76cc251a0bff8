"""Preloaded by the fork server of ``corpus extract -j N`` only: it dies with its parent."""

from gpt2cli.corpus.die_with_parent import die_with_parent

die_with_parent()
