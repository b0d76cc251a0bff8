"""One thin module per subcommand: argument parsing and I/O wiring around a core module.

Each module has ``NAME`` and ``register(app)``.
"""

from gpt2cli.commands import corpus, overlap, pack, sample, score, tokenize, train
from gpt2cli.commands import eval as eval_command

COMMAND_MODULES = [tokenize, pack, train, sample, score, eval_command, overlap, corpus]
