"""Model FLOPs utilisation: achieved training FLOP/s over the GPUs' dense peak.

MFU = tokens/s x flops_per_token / (peak FLOP/s per GPU x GPUs), with ``flops_per_token`` from
``GPT.flops_per_token`` (6 N + 12 L d T, forward + backward, no activation recomputation).
"""

from __future__ import annotations

# Dense (no sparsity) peak TFLOP/s per GPU for 16-bit tensor-core math (bf16; fp16 on cards
# without bf16), from the vendors' data sheets. Matched against torch.cuda.get_device_name()
# by the first key contained in the lower-cased name, so more specific keys come first.
PEAK_TFLOPS: list[tuple[str, float]] = [
    ("gh200", 989.0),
    ("h200", 989.0),
    ("h100 pcie", 756.0),
    ("h100 nvl", 835.0),
    ("h100", 989.0),  # SXM
    ("h800 pcie", 756.0),
    ("h800", 989.0),
    ("b200", 2250.0),
    ("b100", 1750.0),
    ("a100", 312.0),
    ("a800", 312.0),
    ("a30", 165.0),
    ("a10g", 125.0),  # AWS; 70 TFLOP/s listed dense by some sheets, 125 by NVIDIA's
    ("a10", 125.0),
    ("a40", 150.0),
    ("a6000", 155.0),
    ("l40s", 362.0),
    ("l40", 181.0),
    ("l4", 121.0),
    ("v100", 125.0),  # fp16 (no bf16)
    ("t4", 65.0),  # fp16 (no bf16)
    ("rtx 4090", 165.0),
    ("rtx 3090", 71.0),
]


def peak_tflops(device_name: str) -> float | None:
    """The table's peak for a CUDA device name, or None for an unknown device."""
    name = device_name.lower()
    for key, value in PEAK_TFLOPS:
        if key in name:
            return value
    return None


def mfu(
    tokens_per_second: float, flops_per_token: float, peak: float | None, devices: int = 1
) -> float | None:
    """Fraction of peak (0..1) or None without a peak."""
    if not peak or tokens_per_second <= 0:
        return None
    return tokens_per_second * flops_per_token / (peak * 1e12 * devices)
