"""The sampler-facing half of the TRL plug-in: prompt indices from `augur sampler`, outcomes back.

Standard library only (no torch), so CI tests it against the real `augur sampler` binary; the
TRL half is scripts/examples/trl_augur_sampler.py. Prompt ids are the dataset's row indices
0..N-1, registered once with `register(count=N)` as docs/sampler-protocol.md describes.

TRL's `GRPOTrainer` draws its training rows from a sampler laid out like its own
`RepeatSampler`: for every generation batch, `prompts_per_batch` distinct prompts, each
index repeated `group_size` times in a row (one group), and the whole chunk repeated
`repeat_count` times (`num_iterations * steps_per_generation`; the trainer generates on the
first copy and reuses its completions for the others). `AugurPromptSource` yields that layout,
but asks the server which prompts each chunk holds, lazily, when the data loader reaches it.
Because the trainer consumes all copies of a chunk before it fetches the next one, the
next `select` comes after the current chunk's `observe`: each choice sees the latest outcomes.

`record(ids, rewards)` takes the rows of one generation batch (row i's prompt id and reward, as
a reward function sees them), folds them into one (id, successes, rollouts) outcome per prompt
and sends one `observe`: one per generation batch, i.e. per optimizer step with TRL's default
`steps_per_generation = gradient_accumulation_steps` and `num_iterations = 1`.
"""

from __future__ import annotations

from typing import Iterator, Sequence

from augur_sampler_client import SamplerClient


def group_outcomes(
    ids: Sequence[int], rewards: Sequence[float], threshold: float = 0.5
) -> list[tuple[int, int, int]]:
    """One (id, successes, rollouts) per prompt, in first-seen order; a reward of at least
    `threshold` is a success. `ids[i]` is the prompt of row i, `rewards[i]` its reward."""
    if len(ids) != len(rewards):
        raise ValueError(f"{len(ids)} prompt ids but {len(rewards)} rewards")
    counts: dict[int, list[int]] = {}
    for pid, r in zip(ids, rewards):
        c = counts.setdefault(int(pid), [0, 0])
        c[0] += int(r >= threshold)
        c[1] += 1
    return [(pid, s, k) for pid, (s, k) in counts.items()]


def effective_ratio(outcomes: Sequence[tuple[int, int, int]]) -> float:
    """Share of groups with a learning signal: 0 < successes < rollouts."""
    if not outcomes:
        raise ValueError("no groups")
    return sum(0 < s < k for _, s, k in outcomes) / len(outcomes)


class AugurPromptSource:
    """Dataset row indices chosen by `augur sampler`, in TRL's RepeatSampler layout.

    Pass it where TRL expects a sampler (a `torch.utils.data.DataLoader` accepts any iterable
    with a length). One iteration is one "epoch" of `pool_size // prompts_per_batch` chunks,
    as with TRL's own sampler; the trainer starts a new iteration when one runs out.
    """

    def __init__(
        self,
        client: SamplerClient,
        pool_size: int,
        prompts_per_batch: int,
        group_size: int,
        repeat_count: int = 1,
        threshold: float = 0.5,
    ) -> None:
        if prompts_per_batch < 1 or group_size < 1 or repeat_count < 1:
            raise ValueError("prompts_per_batch, group_size and repeat_count must be at least 1")
        if pool_size < prompts_per_batch:
            raise ValueError(f"pool of {pool_size} prompts is smaller than a batch of {prompts_per_batch}")
        self.client = client
        self.pool_size = pool_size
        self.prompts_per_batch = prompts_per_batch
        self.group_size = group_size
        self.repeat_count = repeat_count
        self.threshold = threshold
        self.selected: list[list[int]] = []  # every chunk's prompt ids, in order
        self.telemetry: list[dict] = []  # the server's answer to each observe
        client.register(count=pool_size)

    def chunks_per_epoch(self) -> int:
        return self.pool_size // self.prompts_per_batch

    def __len__(self) -> int:
        return self.chunks_per_epoch() * self.prompts_per_batch * self.group_size * self.repeat_count

    def __iter__(self) -> Iterator[int]:
        for _ in range(self.chunks_per_epoch()):
            ids, _predicted = self.client.select(b=self.prompts_per_batch)
            self.selected.append(ids)
            for _ in range(self.repeat_count):
                for pid in ids:
                    for _ in range(self.group_size):
                        yield pid

    def record(self, ids: Sequence[int], rewards: Sequence[float]) -> dict:
        """Report one generation batch (row prompt ids and rewards) as one `observe`; returns
        the server's telemetry for that step."""
        telemetry = self.client.observe(group_outcomes(ids, rewards, self.threshold))
        self.telemetry.append(telemetry)
        return telemetry
