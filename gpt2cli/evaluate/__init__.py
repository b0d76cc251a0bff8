"""Zero-shot evaluation.

The language-model adapter tasks see, the task registry, the run and its results JSON.
"""
