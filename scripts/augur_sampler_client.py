"""Drive augur's prompt samplers from Python (TRL, verl, a simulator) over JSON Lines.

Standard library only. The server is `augur sampler --method dps` (or any command speaking the
same protocol, e.g. the `sampler_server` example of the augur-sampler crate). Every op is
documented in docs/sampler-protocol.md.

    from augur_sampler_client import SamplerClient

    with SamplerClient(["augur", "sampler", "--method", "dps", "--seed", "0"]) as s:
        s.register(count=len(dataset))          # the pool, once: ids 0..N-1
        for step in range(steps):
            ids, predicted = s.select(b=256)     # in-flight prompts are never re-selected
            ...  # roll out k completions per chosen prompt, score them
            telemetry = s.observe([(pid, n_correct, k) for pid, n_correct in results])
        s.save("sampler_state.json")            # alongside the policy checkpoint

Call `observe` once per optimizer step with every group of that step (merge ranks and
micro-batches first). Prompt ids are dense integers (index into your dataset).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any, Iterable, Sequence

Outcome = Any  # (id, successes, rollouts), or {"id": i, "rewards": [...]}, or {"id", "successes", "rollouts"}


class SamplerError(RuntimeError):
    """The server answered a request with ok=false; the message says why."""


def _outcome(o: Outcome) -> Any:
    if isinstance(o, dict):
        return o
    i, s, k = o
    return [int(i), int(s), int(k)]


class SamplerClient:
    """One sampler server process; requests are answered in order, one line each."""

    def __init__(self, command: Sequence[str], cwd: str | None = None) -> None:
        self._proc = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=cwd,
            text=True,
            bufsize=1,
        )
        self._seq = 0

    def request(self, op: str, **fields: Any) -> dict:
        """Send one request and return its response object (raises SamplerError if not ok)."""
        if self._proc.poll() is not None:
            raise SamplerError(f"sampler server exited with code {self._proc.returncode}")
        self._seq += 1
        msg = {"op": op, "seq": self._seq, **fields}
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(msg) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise SamplerError("sampler server closed its output")
        resp = json.loads(line)
        if not resp.get("ok"):
            raise SamplerError(resp.get("error", "unknown error"))
        return resp

    def register(
        self,
        ids: Iterable[int] | None = None,
        count: int | None = None,
        embeddings: Sequence[Sequence[float]] | None = None,
    ) -> int:
        """Register the pool once: explicit ids, or count (ids 0..count-1). Optional
        embeddings (one row per id, GPS only). Returns the pool size."""
        fields: dict[str, Any] = {}
        if ids is not None:
            fields["ids"] = [int(i) for i in ids]
        if count is not None:
            fields["count"] = int(count)
        if embeddings is not None:
            fields["embeddings"] = [[float(x) for x in row] for row in embeddings]
        return self.request("register", **fields)["count"]

    def select(
        self, candidates: Iterable[int] | None = None, b: int | None = None
    ) -> tuple[list[int], list[float]]:
        """Choose b prompts from the registered pool, or from `candidates` (a subset of it, or
        any ids when no pool is registered); returns (ids, predicted success rates)."""
        if b is None:
            raise ValueError("select needs b")
        fields: dict[str, Any] = {"b": int(b)}
        if candidates is not None:
            fields["candidates"] = [int(c) for c in candidates]
        r = self.request("select", **fields)
        return r["ids"], r["predicted"]

    def predict(self, ids: Iterable[int]) -> dict:
        """Success estimate, its uncertainty and P(0 < s < k) of any ids:
        {"mean": [...], "std": [...], "partial": [...]}. Does not change later selections."""
        r = self.request("predict", ids=[int(i) for i in ids])
        return {k: r[k] for k in ("mean", "std", "partial")}

    def filter(
        self,
        outcomes: Iterable[Outcome],
        topup: int = 0,
        candidates: Iterable[int] | None = None,
        threshold: float | None = None,
    ) -> dict:
        """One roll-out round of a DS/GRESO-style step: the server holds the outcomes until
        `observe`, answers which groups carry signal ("keep", "dropped", "kept_total",
        "rolled_out_total"), and with topup > 0 selects that many fresh prompts ("ids")."""
        fields: dict[str, Any] = {"outcomes": [_outcome(o) for o in outcomes]}
        if topup:
            fields["topup"] = int(topup)
        if candidates is not None:
            fields["candidates"] = [int(c) for c in candidates]
        if threshold is not None:
            fields["threshold"] = float(threshold)
        return self.request("filter", **fields)

    def observe(self, outcomes: Iterable[Outcome] = (), threshold: float | None = None) -> dict:
        """End the optimizer step: report (id, successes, rollouts) per rolled-out prompt (or
        {"id": i, "rewards": [...]}, a reward >= threshold being a success; default 0.5),
        plus any outcomes held by `filter`. Returns the step's telemetry."""
        fields: dict[str, Any] = {"outcomes": [_outcome(o) for o in outcomes]}
        if threshold is not None:
            fields["threshold"] = float(threshold)
        return self.request("observe", **fields)["telemetry"]

    def release(self, ids: Iterable[int]) -> int:
        """Return in-flight prompts to the pool without an outcome; returns how many were."""
        return self.request("release", ids=[int(i) for i in ids])["released"]

    def save(self, path: str | None = None) -> dict | None:
        """Save state to `path` on the server side, or return it inline when no path is given."""
        if path is None:
            return self.request("save")["state"]
        self.request("save", path=str(path))
        return None

    def load(self, path: str | None = None, state: dict | None = None) -> None:
        """Restore state from a file written by `save(path)` or from an inline state."""
        if (path is None) == (state is None):
            raise ValueError("give exactly one of path or state")
        if path is not None:
            self.request("load", path=str(path))
        else:
            self.request("load", state=state)

    def info(self) -> dict:
        """Sampler name, step count, pool size (None if none registered), in-flight prompts
        and outcomes held by an open filter round."""
        r = self.request("info")
        return {k: r[k] for k in ("name", "step", "pool", "in_flight", "round")}

    def close(self) -> int:
        """Close the server's input and wait for it to exit; returns its exit code."""
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.close()
        code = self._proc.wait(timeout=30)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        return code

    def __enter__(self) -> "SamplerClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
