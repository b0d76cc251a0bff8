"""Benchmarks while training (``--eval-task``): `gpt2 eval` tasks run on the model being
trained at each validation, as llm.c runs HellaSwag in its training loop.

The tasks and their data files are found when the run starts (a missing file is an error
then, not at the first validation). Under torchrun every rank scores its stride of the
requests and gathers the others' (:class:`SplitLanguageModel`), so each rank computes the
same metrics from all the examples; under FSDP each rank evaluates an unsharded copy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

from gpt2cli import jsonio
from gpt2cli.errors import Gpt2Error
from gpt2cli.evaluate import runner
from gpt2cli.evaluate.language_model import LanguageModel
from gpt2cli.evaluate.tasks import task_files
from gpt2cli.evaluate.tasks.base import EvalOptions, Task
from gpt2cli.infer import scoring
from gpt2cli.model.gpt import GPT
from gpt2cli.train import distributed
from gpt2cli.train.config import TrainConfig
from gpt2cli.train.distributed import DistEnv

T = TypeVar("T")
R = TypeVar("R")


class SplitLanguageModel(LanguageModel):
    """A LanguageModel whose requests are shared out over the ranks; all get every answer."""

    def __init__(self, *args: Any, env: DistEnv, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.env = env

    def _split(self, items: Sequence[T], work: Callable[[list[T]], list[R]]) -> list[R]:
        rank, world = self.env.rank, self.env.world_size
        mine = list(items[rank::world])
        parts = distributed.gather_objects(work(mine) if mine else [], self.env)
        answers: list[Any] = [None] * len(items)
        for r, part in enumerate(parts):
            answers[r::world] = part
        return answers

    def _loglikelihood_scores(
        self,
        requests: Sequence[tuple[Sequence[int], Sequence[int]]],
        exclude: Sequence[int] | None,
    ) -> list[scoring.SequenceScore]:
        base = super()
        return self._split(requests, lambda part: base._loglikelihood_scores(part, exclude))

    def score_documents(self, documents: Sequence[Sequence[int]]) -> list[scoring.SequenceScore]:
        return self._split(documents, super().score_documents)

    def generate(self, prompts: Sequence[str], max_tokens: int, *args: Any, **kw: Any) -> list[str]:
        base = super()
        return self._split(prompts, lambda part: base.generate(part, max_tokens, *args, **kw))


class TaskEval:
    """The --eval-task tasks of a run, their data resolved up front."""

    def __init__(self, names: list[str], limit: int | None, data_dir: str | None) -> None:
        self.tasks: list[Task] = runner.choose_tasks(names, None)
        self.paths: dict[str, Path] = {}
        where = Path(data_dir) if data_dir else None
        for task in self.tasks:
            try:
                self.paths[task.name] = task_files.resolve(task, None, where, download=False)
            except Gpt2Error as error:
                names_ = ", ".join(f.name for f in task.data_files)
                raise Gpt2Error(
                    f"--eval-task {task.name}: {error.message}",
                    f"put {names_} in --eval-task-data DIR or in {task_files.cache_dir()} "
                    f"(`gpt2 eval --task {task.name} --download` fetches it there)",
                ) from None
        self.options = EvalOptions(limit=limit)

    @classmethod
    def from_config(cls, config: TrainConfig) -> TaskEval | None:
        if not config.eval_task:
            return None
        return cls(config.eval_task, config.eval_task_limit, config.eval_task_data)

    @staticmethod
    def summary(records: list[dict[str, Any]]) -> str:
        shown = ("inf" if r["value"] is None else f"{r['value']:.4f}" for r in records)
        return "  ".join(f"{r['task']} {r['metric']} {v}" for r, v in zip(records, shown))

    def run(
        self, model: GPT, env: DistEnv, precision: Any, batch_size: int, fsdp: bool
    ) -> list[dict[str, Any]]:
        """One record (without step) per task: its metrics on ``model``, in eval mode."""
        evaluated = unsharded_copy(model, env) if fsdp else model
        lm = SplitLanguageModel(
            evaluated,
            block_size=model.config.block_size,
            device=env.device,
            batch_size=batch_size,
            vocab_size=model.config.vocab_size,
            env=env,
        )
        records = []
        was_training = model.training
        evaluated.eval()
        try:
            with torch.no_grad(), precision.autocast():
                for task in self.tasks:
                    result = task.evaluate(lm, self.paths[task.name], self.options)
                    main = runner.main_metric(task, result)
                    metric = next(k for k, v in result.metrics.items() if v is main)
                    records.append(
                        {
                            "kind": "task",
                            "task": task.name,
                            "metric": metric,
                            "value": jsonio.finite(main.value),
                            "metrics": jsonio.finite(
                                {k: v.value for k, v in result.metrics.items()}
                            ),
                            "n": result.n,
                        }
                    )
        finally:
            model.train(was_training)
        return records


def unsharded_copy(model: GPT, env: DistEnv) -> GPT:
    """FSDP: the full model on every rank (collective), for forward passes rank by rank."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    copy = GPT(model.config).to(env.device)
    copy.load_state_dict({k: v.to(env.device) for k, v in state.items()})
    return copy
