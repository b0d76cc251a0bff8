"""What ``gpt2 sample`` decides before it generates: the options checked, the seed (random when
not given), the model's layout for the rows generated together, and one seeded generator for
the whole run (so the same seed on the same device gives the same text)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch

from gpt2cli.infer import generation
from gpt2cli.infer.sample_options import SampleOptions
from gpt2cli.model.gpt import GPT


class Sampler:
    """A model and the options of one run; :meth:`generate` continues token-id prompts."""

    def __init__(
        self, model: GPT, options: SampleOptions, device: torch.device, many_prompts: bool
    ) -> None:
        options.check()
        self.model = model
        self.options = options
        self.seed = (
            options.seed
            if options.seed is not None
            else int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
        )
        prompts = options.prompts_per_batch if many_prompts else 1
        generation.prepare_model(model, min(options.batch_size, options.num_samples * prompts))
        self.generator = torch.Generator(device=device).manual_seed(self.seed)

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        on_text: Callable[[int, str], None] | None = None,
        on_done: Callable[[generation.Completion], None] | None = None,
    ) -> list[generation.Completion]:
        o = self.options
        return generation.generate(
            self.model,
            prompts,
            generation.SamplingSettings(
                o.max_tokens,
                greedy=o.greedy,
                temperature=o.temperature,
                top_k=o.top_k,
                top_p=o.top_p,
                stop=o.stop,
                ignore_eot=o.ignore_eot,
            ),
            num_samples=o.num_samples,
            generator=self.generator,
            batch_size=o.batch_size,
            on_text=on_text,
            on_done=on_done,
        )
