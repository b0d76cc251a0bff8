"""Tokens to shards and back.

The shard format, manifests, packing, verification, the dataset and the training loader.
"""
