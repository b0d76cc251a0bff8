"""gpt2cli: a Unix-pipeline command-line suite for GPT-2."""

__version__ = "0.1.0"
