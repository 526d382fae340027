"""Tests of scripts/augur_prompt_source.py (the TRL plug-in's sampler-facing half) against the real
`augur sampler` binary, without torch.

Runs with `python3 scripts/test_augur_prompt_source.py` (or pytest). The binary is $AUGUR_BIN,
else target/release/augur (under $CARGO_TARGET_DIR), built with
`cargo build --release -p augur-cli` when missing. The pool is registered as ids 0..N-1 in order,
the way docs/sampler-protocol.md and the plug-in do it.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from augur_prompt_source import AugurPromptSource, effective_ratio, group_outcomes  # noqa: E402
from augur_sampler_client import SamplerClient, SamplerError  # noqa: E402

AUGUR = None


def augur() -> str:
    global AUGUR
    if AUGUR is None:
        AUGUR = os.environ.get("AUGUR_BIN")
        if not AUGUR:
            exe = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release" / "augur"
            if not exe.exists():
                subprocess.run(["cargo", "build", "--release", "-q", "-p", "augur-cli"], cwd=REPO, check=True)
            AUGUR = str(exe)
    return AUGUR


def server(method: str, seed: int = 0, group_size: int = 4) -> SamplerClient:
    return SamplerClient([augur(), "sampler", "--method", method, "--seed", str(seed),
                          "--set", f"group_size={group_size}"])


def chunks(rows: list[int], prompts: int, group: int, repeat: int) -> list[list[int]]:
    n = prompts * group * repeat
    return [rows[i:i + n] for i in range(0, len(rows), n)]


def step_rows(src: AugurPromptSource, steps: int, rows_per_step: int):
    """The rows of each step, starting a new iteration (epoch) when one runs out, as the trainer does."""
    it = iter(src)
    for _ in range(steps):
        rows = []
        while len(rows) < rows_per_step:
            try:
                rows.append(next(it))
            except StopIteration:
                it = iter(src)
        yield rows


class Pool:
    """A simulated policy on a pool in id order: ids below `solved` always succeed, the rest
    succeed with probability 0.5 (a mixed prompt)."""

    def __init__(self, n: int, solved: int, seed: int) -> None:
        self.n, self.solved = n, solved
        self.rng = random.Random(seed)

    def rewards(self, rows: list[int]) -> list[float]:
        return [1.0 if pid < self.solved or self.rng.random() < 0.5 else 0.0 for pid in rows]


class GroupOutcomesTest(unittest.TestCase):
    def test_counts_successes_per_prompt_in_first_seen_order(self):
        ids = [7, 7, 7, 3, 3, 3]
        rewards = [1.0, 0.0, 0.5, 0.49, 0.0, 1.0]
        self.assertEqual(group_outcomes(ids, rewards), [(7, 2, 3), (3, 1, 3)])
        self.assertEqual(group_outcomes(ids, rewards, threshold=0.4), [(7, 2, 3), (3, 2, 3)])

    def test_length_mismatch_is_an_error(self):
        with self.assertRaisesRegex(ValueError, "2 prompt ids but 3 rewards"):
            group_outcomes([1, 1], [0.0, 1.0, 1.0])

    def test_effective_ratio(self):
        self.assertEqual(effective_ratio([(0, 0, 4), (1, 2, 4), (2, 4, 4), (3, 1, 4)]), 0.5)


class PromptSourceTest(unittest.TestCase):
    def test_torch_free(self):
        self.assertNotIn("torch", sys.modules)

    def test_rows_follow_trl_repeat_layout(self):
        with server("mopps") as s:
            src = AugurPromptSource(s, pool_size=20, prompts_per_batch=3, group_size=4, repeat_count=2)
            rows = list(src)
            self.assertEqual(len(rows), len(src))
            self.assertEqual(len(rows), 6 * 3 * 4 * 2)  # 20 // 3 chunks per epoch
            for chunk, ids in zip(chunks(rows, 3, 4, 2), src.selected):
                self.assertEqual(len(set(ids)), 3)
                once = [pid for pid in ids for _ in range(4)]
                self.assertEqual(chunk, once + once)
            # without observe, every chunk stays in flight: 6 disjoint chunks of the 20 prompts
            everything = [pid for ids in src.selected for pid in ids]
            self.assertEqual(len(set(everything)), 18)
            self.assertTrue(all(0 <= pid < 20 for pid in everything))

    def test_each_select_comes_after_the_previous_observe(self):
        pool = Pool(40, 0, seed=3)
        with server("dps") as s:
            src = AugurPromptSource(s, pool_size=40, prompts_per_batch=4, group_size=4)
            steps_seen_at_select = []
            it = iter(src)
            for step in range(5):
                rows = [next(it) for _ in range(16)]
                steps_seen_at_select.append(s.info()["step"])
                tel = src.record(rows, pool.rewards(rows))
                self.assertEqual(tel["step"], step + 1)
                self.assertEqual(tel["rollouts"], 16)
            self.assertEqual(steps_seen_at_select, [0, 1, 2, 3, 4])
            self.assertEqual(s.info()["in_flight"], 0)

    def test_predictive_samplers_learn_to_skip_solved_prompts_in_an_ordered_pool(self):
        # ids 0..29 always solved (no signal), 30..59 mixed; 25 steps of 6 prompts x 4 (3 epochs).
        # Uniform picks about half solved prompts after step 10 (0.43-0.54 over seeds 0-7);
        # MoPPS 0.12-0.26 and DPS 0-0.02 once they have seen them succeed 4/4.
        for method, at_most in [("mopps", 0.33), ("dps", 0.1), ("uniform", 1.0)]:
            pool = Pool(60, 30, seed=2)
            with server(method, seed=2) as s:
                src = AugurPromptSource(s, pool_size=60, prompts_per_batch=6, group_size=4)
                for rows in step_rows(src, steps=25, rows_per_step=24):
                    src.record(rows, pool.rewards(rows))
            late = [pid for ids in src.selected[10:] for pid in ids]
            solved_share = sum(pid < 30 for pid in late) / len(late)
            if method == "uniform":
                self.assertGreater(solved_share, 0.33)  # the pool really has the solved half
            else:
                self.assertLessEqual(solved_share, at_most, method)

    def test_unknown_prompt_id_is_refused_and_changes_nothing(self):
        with server("mopps") as s:
            src = AugurPromptSource(s, pool_size=8, prompts_per_batch=2, group_size=2)
            rows = list(iter(src))[:4]
            with self.assertRaisesRegex(SamplerError, "unknown id 8"):
                src.record(rows + [8, 8], [1.0] * 6)
            self.assertEqual(s.info()["step"], 0)
            self.assertEqual(src.record(rows, [1.0, 0.0, 0.0, 0.0])["step"], 1)

    def test_pool_smaller_than_a_batch_is_an_error(self):
        with server("mopps") as s:
            with self.assertRaisesRegex(ValueError, "pool of 3 prompts is smaller than a batch of 4"):
                AugurPromptSource(s, pool_size=3, prompts_per_batch=4, group_size=2)


if __name__ == "__main__":
    unittest.main()
