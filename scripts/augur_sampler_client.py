"""Drive augur's prompt samplers from Python (TRL, verl, a simulator) over JSON Lines.

Standard library only. The server is `augur sampler --method dps` (or any command speaking the
same protocol, e.g. the `sampler_server` example of the augur-sampler crate).

    from augur_sampler_client import SamplerClient

    with SamplerClient(["augur", "sampler", "--method", "dps"]) as s:
        ids, predicted = s.select(candidates=range(len(dataset)), b=256)
        ...  # roll out k completions per chosen prompt, score them
        telemetry = s.observe([(pid, n_correct, k) for pid, n_correct in results])
        s.save("sampler_state.json")  # alongside the policy checkpoint

Prompt ids are dense integers (index into your dataset).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any, Iterable, Sequence


class SamplerError(RuntimeError):
    """The server answered a request with ok=false; the message says why."""


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

    def select(self, candidates: Iterable[int], b: int) -> tuple[list[int], list[float]]:
        """Choose b of the candidate prompt ids; returns (ids, predicted success rates)."""
        r = self.request("select", candidates=[int(c) for c in candidates], b=int(b))
        return r["ids"], r["predicted"]

    def observe(self, outcomes: Iterable[tuple[int, int, int]]) -> dict:
        """Report (id, successes, rollouts) per rolled-out prompt; returns step telemetry."""
        triples = [[int(i), int(s), int(k)] for i, s, k in outcomes]
        return self.request("observe", outcomes=triples)["telemetry"]

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
        """Sampler name and step count."""
        r = self.request("info")
        return {"name": r["name"], "step": r["step"]}

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
