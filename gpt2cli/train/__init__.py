"""Training.

Config, optimizer, precision and micro-batch, torch.distributed, checkpoints, metrics, plots,
MFU.
"""
