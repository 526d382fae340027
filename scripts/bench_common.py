"""What scripts/bench_trl.py (GRPO) and scripts/bench_trl_sft.py (SFT) share: logging to stderr,
the load average, running `augur` on a written config while polling its metrics.jsonl, the
config's optimizer/checkpoint/logging tail, and timing a TRL trainer with the versions it ran.

Each bench keeps what differs (its batch, its config's head, how a metrics line maps to a step,
its summary line), so that a reader sees one engine comparison per file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("AUGUR_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "augur"))
DEFAULT_MODEL = os.path.join(CACHE, "smollm2-135m-instruct-hf")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def loadavg():
    return round(os.getloadavg()[0], 2)


def mean(xs):
    return round(statistics.fmean(xs), 3) if xs else None


def count_lines(path):
    try:
        with open(path) as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return 0


def proc_cpu_s(pid):
    """CPU seconds (user + system, all threads) of a live process, from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def config_tail(lr, max_grad_norm, run_dir):
    """The `[optimizer]`, `[checkpoint]` and `[logging]` sections both benches write: a constant
    LR, no intermediate checkpoints, progress printed."""
    return f"""
[optimizer.schedule]
lr = {lr}
kind = "constant"

[optimizer.adamw]
max_grad_norm = {max_grad_norm}

[checkpoint]
dir = {json.dumps(run_dir)}
every = 0

[logging]
print = true
"""


def add_augur_args(ap, workdir):
    """The command-line flags both benches take for the augur side (and the shared ones)."""
    ap.add_argument("--augur", default=os.path.join(REPO, "target", "release", "augur"))
    ap.add_argument("--model", default=DEFAULT_MODEL, help="HF folder (scripts/gguf-to-hf.py)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", default=workdir, help="run folders (deleted and rewritten)")
    ap.add_argument("--augur-set", action="append", default=[], metavar="KEY=VALUE",
                    help="passed to augur as --set KEY=VALUE, e.g. model.dtype=bf16 (repeatable)")


def run_augur(args, command, name, config_text):
    """Writes `config_text` to <workdir>/<name>.toml and runs `augur <command>` on it (the config's
    checkpoint dir must be <workdir>/<name>), polling metrics.jsonl every 0.1 s.

    Returns (metrics lines, load average when each line appeared, process CPU seconds when each
    line appeared, extra fields for the summary). The poll sees a line up to 0.1 s late."""
    run_dir = os.path.join(args.workdir, name)
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(args.workdir, exist_ok=True)
    path = os.path.join(args.workdir, f"{name}.toml")
    with open(path, "w") as f:
        f.write(config_text)
    cmd = [args.augur, command, "--config", path]
    for kv in args.augur_set:
        cmd += ["--set", kv]
    log("augur: " + " ".join(cmd))
    metrics = os.path.join(run_dir, "metrics.jsonl")
    load0 = loadavg()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=sys.stderr, stderr=sys.stderr,
                            env={**os.environ, "RAYON_NUM_THREADS": str(args.threads)})
    load_at_line, cpu_at_line = [], []
    while proc.poll() is None:
        cpu = proc_cpu_s(proc.pid)
        while cpu is not None and count_lines(metrics) > len(load_at_line):
            load_at_line.append(loadavg())
            cpu_at_line.append(cpu)
        time.sleep(0.1)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{os.path.basename(sys.argv[0])}: augur exited with {proc.returncode}")
    with open(metrics) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    extra = {"binary": args.augur, "augur_set": args.augur_set, "threads": args.threads,
             "run_wall_s": round(wall, 1), "loadavg_1m": [load0, loadavg()]}
    return lines, load_at_line, cpu_at_line, extra


def train_timed(trainer, optim):
    """Runs `trainer.train()` with the Trainer's own prints sent to stderr (stdout stays JSON);
    returns the summary fields: versions, threads, OMP wait policy, optimizer, wall time, load."""
    import peft
    import torch
    import transformers
    import trl

    load0 = loadavg()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        trainer.train()
    return {
        "trl": trl.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "optim": optim,
        "run_wall_s": round(time.perf_counter() - t0, 1),
        "loadavg_1m": [load0, loadavg()],
    }
