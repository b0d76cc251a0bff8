"""Using a trained model.

Generation with a KV cache, log-likelihood scoring, `gpt2 sample` and `gpt2 score`.
"""
