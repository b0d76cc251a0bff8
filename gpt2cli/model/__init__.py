"""GPT-2 itself.

The model, its CPU kernels and decoding, Hugging Face weights, and what `--model` names.
"""
