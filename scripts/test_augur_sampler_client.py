"""Tests of scripts/augur_sampler_client.py against the real compiled server.

Runs with `python3 -m pytest scripts/test_augur_sampler_client.py` or
`python3 scripts/test_augur_sampler_client.py`. The server binary is taken from
$AUGUR_SAMPLER_SERVER, else built with
`cargo build --release -p augur-sampler --example sampler_server` and looked up under
$CARGO_TARGET_DIR (default: target/).
"""

from __future__ import annotations

import json
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


def server() -> str:
    global SERVER
    if SERVER is None:
        SERVER = server_binary()
    return SERVER


def client(method: str = "dps", seed: int = 0, *sets: str) -> SamplerClient:
    """A server for `method`; `sets` are config overrides such as "dps.lambda=0.5"."""
    return SamplerClient([server(), method, str(seed), *sets])


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
            info = s.info()
            self.assertEqual((info["name"], info["step"]), ("beta+target", 10))
            self.assertEqual((info["pool"], info["in_flight"], info["round"]), (None, 0, 0))

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


class PoolProtocolTest(unittest.TestCase):
    def test_register_once_then_select_by_count(self):
        learner = Learner(300, 3)
        with client("mopps") as s:
            self.assertEqual(s.register(count=300), 300)
            for step in range(1, 6):
                ids, pred = s.select(b=16)
                self.assertEqual(len(set(ids)), 16)
                self.assertTrue(all(0 <= i < 300 for i in ids))
                t = s.observe(learner.rollout(ids))
                self.assertEqual(t["step"], step)
            self.assertEqual(s.info()["pool"], 300)

    def test_in_flight_prompts_are_excluded_and_released(self):
        with client("uniform") as s:
            s.register(ids=[5, 6, 7, 8])
            a, _ = s.select(b=2)
            b, _ = s.select(b=2)
            self.assertEqual(sorted(a + b), [5, 6, 7, 8])
            with self.assertRaisesRegex(SamplerError, "in flight"):
                s.select(b=1)
            self.assertEqual(s.release(a), 2)
            c, _ = s.select(b=2)
            self.assertEqual(sorted(c), sorted(a))

    def test_predict_matches_the_posterior_by_hand(self):
        with client("mopps") as s:
            s.register(count=10)
            s.observe([(3, 6, 8)])
            p = s.predict([3, 4])
            # Beta(7, 3) after 6 of 8 from Beta(1, 1); an unseen prompt stays Beta(1, 1).
            self.assertAlmostEqual(p["mean"][0], 0.7, places=6)
            self.assertAlmostEqual(p["std"][0], math.sqrt(21 / 1100), places=6)
            self.assertAlmostEqual(p["mean"][1], 0.5, places=6)
            self.assertAlmostEqual(p["std"][1], math.sqrt(1 / 12), places=6)
            with self.assertRaisesRegex(SamplerError, "unknown id 10"):
                s.predict([10])

    def test_filter_topup_then_one_observe(self):
        with client("uniform") as s:
            s.register(count=40)
            ids, _ = s.select(b=8)
            # Half the groups carry signal; top up 4 more, rewards graded at threshold 0.5.
            outs = [(i, 2 if n % 2 == 0 else 8, 8) for n, i in enumerate(ids)]
            r = s.filter(outs, topup=4)
            self.assertEqual(r["kept_total"], 4)
            self.assertEqual(sorted(r["keep"] + r["dropped"]), sorted(ids))
            self.assertTrue(set(r["ids"]).isdisjoint(ids))
            graded = [{"id": i, "rewards": [0.9, 0.1, 0.6, 0.4]} for i in r["ids"]]
            r2 = s.filter(graded)
            self.assertEqual(r2["kept_total"], 8)
            self.assertEqual(s.info()["round"], 12)
            t = s.observe()
            self.assertEqual(t["rollouts"], 8 * 8 + 4 * 4)
            self.assertEqual(t["step"], 1)
            self.assertAlmostEqual(t["effective_ratio"], 8 / 12)
            self.assertEqual(s.info()["in_flight"], 0)

    def test_protocol_errors(self):
        with client("dps") as s:
            with self.assertRaisesRegex(SamplerError, "select before register"):
                s.select(b=2)
            s.register(count=20)
            with self.assertRaisesRegex(SamplerError, "unknown id 25"):
                s.observe([(25, 1, 8)])
            with self.assertRaisesRegex(SamplerError, "observed twice"):
                s.observe([(2, 1, 8), (2, 3, 8)])
            with self.assertRaisesRegex(SamplerError, "given twice"):
                s.register(ids=[1, 1])
            self.assertEqual(s.info()["step"], 0)

    def test_state_with_pool_and_open_round_resumes_exactly(self):
        learner = Learner(50, 4)
        with client("dps", 3) as a:
            a.register(count=50)
            ids, _ = a.select(b=6)
            a.filter(learner.rollout(ids[:3]))
            state = a.save()
            a.observe(learner.rollout(ids[3:]))
            expected = a.select(b=6)
            info = a.info()
        learner = Learner(50, 4)
        learner.rollout(ids[:3])
        with client("dps", 77) as b:
            b.load(state=state)
            self.assertEqual(b.info()["round"], 3)
            b.observe(learner.rollout(ids[3:]))
            self.assertEqual(b.select(b=6), expected)
            self.assertEqual(b.info(), info)


class NonUtf8Test(unittest.TestCase):
    def test_server_answers_bad_bytes_and_keeps_serving(self):
        data = b'{"op":"info"}\n\xff\xfe\x80\n\xc3(\n{"op":"info","seq":9}\n'
        p = subprocess.run([server(), "mopps", "0"], input=data, capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        replies = [json.loads(l) for l in p.stdout.decode().splitlines()]
        self.assertEqual([r["ok"] for r in replies], [True, False, False, True])
        self.assertIn("not UTF-8", replies[1]["error"])
        self.assertEqual(replies[3]["seq"], 9)


class OrderIndependenceTest(unittest.TestCase):
    """Issue 14: DPS λ=0.5 with the pool as ids 0..N-1, as this client's own docs send it,
    must select like the shuffled pool and starve no half of the ids."""

    N, B, STEPS = 1000, 32, 80

    def run_dps(self, pool, use_register):
        learner = Learner(self.N, 11)
        counts = [0] * self.N
        steps = []
        with client("dps", 2, "dps.lambda=0.5") as s:
            if use_register:
                s.register(ids=pool)
            for _ in range(self.STEPS):
                ids, _ = s.select(b=self.B) if use_register else s.select(pool, self.B)
                steps.append(ids)
                for i in ids:
                    counts[i] += 1
                s.observe(learner.rollout(ids))
        return steps, counts

    def test_in_order_and_shuffled_pools_select_alike(self):
        in_order = list(range(self.N))
        shuffled = in_order[:]
        random.Random(5).shuffle(shuffled)
        a, counts = self.run_dps(in_order, use_register=False)
        b, _ = self.run_dps(shuffled, use_register=True)
        c, _ = self.run_dps(in_order, use_register=True)
        self.assertEqual(a, b)
        self.assertEqual(a, c)
        half = self.N // 2
        never_low = sum(1 for x in counts[:half] if x == 0)
        never_high = sum(1 for x in counts[half:] if x == 0)
        self.assertLess(abs(never_low - never_high), 0.05 * (never_low + never_high) + 30,
                        (never_low, never_high))


if __name__ == "__main__":
    unittest.main()
