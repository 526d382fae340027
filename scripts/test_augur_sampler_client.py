"""Tests of scripts/augur_sampler_client.py against the real compiled server.

Runs with `python3 -m pytest scripts/test_augur_sampler_client.py` or
`python3 scripts/test_augur_sampler_client.py`. The server binary is taken from
$AUGUR_SAMPLER_SERVER, else built with
`cargo build --release -p augur-sampler --example sampler_server` and looked up under
$CARGO_TARGET_DIR (default: target/).
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from augur_sampler_client import SamplerClient, SamplerError  # noqa: E402


def server_binary() -> str:
    env = os.environ.get("AUGUR_SAMPLER_SERVER")
    if env:
        return env
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    exe = target / "release" / "examples" / "sampler_server"
    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "augur-sampler", "--example", "sampler_server"],
        cwd=REPO,
        check=True,
    )
    if not exe.exists():
        raise RuntimeError(f"sampler_server not found at {exe}")
    return str(exe)


SERVER = None


def client(method: str = "dps", seed: int = 0) -> SamplerClient:
    global SERVER
    if SERVER is None:
        SERVER = server_binary()
    return SamplerClient([SERVER, method, str(seed)])


class Learner:
    """A tiny simulated policy: fixed per-prompt success rates, seeded Bernoulli rollouts."""

    def __init__(self, n: int, seed: int) -> None:
        rng = random.Random(seed)
        self.p = [1 / (1 + math.exp(-rng.gauss(0, 3))) for _ in range(n)]
        self.rng = random.Random(seed + 1)

    def rollout(self, ids, k=8):
        return [(i, sum(self.rng.random() < self.p[i] for _ in range(k)), k) for i in ids]


class ClientTest(unittest.TestCase):
    def test_select_observe_and_telemetry(self):
        learner = Learner(200, 1)
        with client("mopps") as s:
            for step in range(1, 11):
                ids, pred = s.select(range(200), 16)
                self.assertEqual(len(ids), 16)
                self.assertEqual(len(set(ids)), 16)
                self.assertTrue(all(0.0 <= p <= 1.0 for p in pred))
                t = s.observe(learner.rollout(ids))
                self.assertEqual(t["step"], step)
                self.assertEqual(t["rollouts"], 16 * 8)
                self.assertEqual(t["rollouts_cumulative"], step * 16 * 8)
                self.assertTrue(0.0 <= t["effective_ratio"] <= 1.0)
            self.assertEqual(s.info(), {"name": "beta+target", "step": 10})

    def test_save_load_resumes_exactly(self):
        learner = Learner(100, 2)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "state.json")
            with client("dps", seed=5) as a:
                for _ in range(5):
                    ids, _ = a.select(range(100), 8)
                    a.observe(learner.rollout(ids))
                a.save(path)
                inline = a.save()
                expected = a.select(range(100), 8)
            with client("dps", seed=99) as b:
                b.load(path=path)
                self.assertEqual(b.select(range(100), 8), expected)
            with client("dps", seed=42) as c:
                c.load(state=inline)
                self.assertEqual(c.select(range(100), 8), expected)

    def test_errors_are_reported_and_server_keeps_going(self):
        with client("greso") as s:
            with self.assertRaises(SamplerError):
                s.select([1, 2, 3], 5)
            with self.assertRaises(SamplerError):
                s.observe([(1, 9, 8)])
            with self.assertRaises(SamplerError):
                s.load(path="/nonexistent/augur_state.json")
            with self.assertRaises(SamplerError):
                s.request("frobnicate")
            ids, _ = s.select([1, 2, 3], 2)
            self.assertEqual(len(ids), 2)
            with self.assertRaises(ValueError):
                s.load()
        # A state from another method is refused.
        with client("mopps") as m:
            state = m.save()
        with client("dps") as d:
            with self.assertRaises(SamplerError):
                d.load(state=state)


if __name__ == "__main__":
    unittest.main()
