"""One thin module per subcommand: argument parsing and I/O wiring around a core module.

Each module has ``NAME`` and ``register(app)``.
"""

from gpt2cli.commands import eval as eval_command
from gpt2cli.commands import overlap, pack, sample, score, tokenize, train

COMMAND_MODULES = [tokenize, pack, train, sample, score, eval_command, overlap]
