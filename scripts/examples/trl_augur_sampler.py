#!/usr/bin/env python3
"""TRL's GRPOTrainer with its prompts chosen by `augur sampler` (MoPPS or DPS), against TRL's own
(random) sampling, on the same pool and settings, in one invocation.

How the plug-in works (the torch-free half is scripts/augur_prompt_source.py):
  - `AugurGRPOTrainer` replaces GRPOTrainer's RepeatSampler by an `AugurPromptSource`: each
    generation batch's prompts come from one `select` of `augur sampler --method M`.
  - The reward function is wrapped: after scoring a generation batch, it folds the rows into one
    (prompt id, successes, rollouts) per prompt and sends one `observe` to the server.
  - Prompt ids are the dataset's row indices (an `augur_id` column, so the reward wrapper sees them).

To use it in your own run:

    client = SamplerClient(["augur", "sampler", "--method", "mopps", "--seed", "0"])
    trainer = AugurGRPOTrainer(client, model=..., reward_funcs=my_reward, args=grpo_config,
                               train_dataset=data.map(lambda _, i: {"augur_id": i}, with_indices=True), ...)
    trainer.train()

Single process only (multi-GPU TRL needs every rank to see the same selection: select on rank 0
and broadcast; not done here).

The experiment (defaults kept small for a shared 2-core CPU): SmolLM2-135M-Instruct (HF folder
from scripts/gguf-to-hf.py), LoRA r=8 on q/k/v/o, the 80-prompt arithmetic pool
docs/pools/arith-mixed-t07-32tok/pool.jsonl, 8 prompts x 4 completions per step, 32 new tokens,
temperature 0.7 (the pool's measured setting), AdamW lr 3e-4, beta 0. Each arm starts from the
same base model and seed. Prints one JSON line per arm and a comparison line on stdout:

  {"arm": "trl", "effective_ratio": ..., "effective_ratio_per_step": [...], ...}
  {"arm": "mopps", ...}
  {"compare": "effective_ratio", "trl": ..., "mopps": ..., ...}

Usage (repository root; the venv needs torch, transformers, trl, peft, datasets):
  python scripts/examples/trl_augur_sampler.py [--arms trl,mopps] [--steps 10] [--augur target/release/augur]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "scripts"))

from augur_prompt_source import AugurPromptSource, effective_ratio, group_outcomes  # noqa: E402
from augur_sampler_client import SamplerClient  # noqa: E402
from trl_setup import grpo_config, last_number_reward, load_model, load_prompts, lora_config  # noqa: E402

CACHE = os.environ.get("AUGUR_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "augur"))
DEFAULT_MODEL = os.path.join(CACHE, "smollm2-135m-instruct-hf")
DEFAULT_POOL = os.path.join(REPO, "docs", "pools", "arith-mixed-t07-32tok", "pool.jsonl")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def recording_reward(inner, groups, source=None):
    """Wraps a TRL reward function: records each generation batch's groups (for the effective
    ratio of every arm) and, with an augur `source`, reports them to the server (one observe)."""

    def reward(completions, augur_id, **kwargs):
        rewards = inner(completions=completions, **kwargs)
        groups.append(group_outcomes(augur_id, rewards))
        if source is not None:
            source.record(augur_id, rewards)
        return rewards

    reward.__name__ = inner.__name__
    return reward


def make_trainer_class():
    from trl import GRPOTrainer

    class AugurGRPOTrainer(GRPOTrainer):
        """GRPOTrainer whose training prompts come from `augur sampler` (pass `prompt_source`)."""

        def __init__(self, *args, prompt_source: AugurPromptSource | None = None, **kwargs):
            self.prompt_source = prompt_source
            super().__init__(*args, **kwargs)

        def _get_train_sampler(self, dataset=None):
            if self.prompt_source is None:
                return super()._get_train_sampler(dataset)
            return self.prompt_source

    return AugurGRPOTrainer


def run_arm(arm: str, args) -> dict:
    from transformers import TrainerCallback

    tok, model = load_model(args.model, args.threads, args.seed)
    data = load_prompts(args.pool, with_ids=True)
    rows = args.prompts * args.group_size
    out_dir = os.path.join(args.workdir, arm)
    shutil.rmtree(out_dir, ignore_errors=True)
    config = grpo_config(out_dir, seed=args.seed, steps=args.steps, micro_batch=rows, rows=rows,
                         group_size=args.group_size, max_new_tokens=args.max_new_tokens,
                         temperature=args.temperature, lr=args.lr)
    lora = lora_config()

    groups: list[list[tuple[int, int, int]]] = []
    client = source = None
    if arm != "trl":
        client = SamplerClient([args.augur, "sampler", "--method", arm, "--seed", str(args.seed),
                                "--set", f"group_size={args.group_size}"])
        # one chunk per optimizer step: num_iterations * steps_per_generation = 1
        source = AugurPromptSource(client, len(data), args.prompts, args.group_size, repeat_count=1)

    step_s: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_begin(self, *_, **__):
            self.t0 = time.perf_counter()

        def on_step_end(self, _a, state, *_, **__):
            step_s.append(time.perf_counter() - self.t0)
            g = groups[-1] if groups else []
            log(f"{arm} step {state.global_step}: {step_s[-1]:.1f}s, groups {g}, "
                f"effective {effective_ratio(g) if g else float('nan'):.3f}, load {os.getloadavg()[0]:.1f}")

    trainer = make_trainer_class()(
        model=model, reward_funcs=recording_reward(last_number_reward, groups, source), args=config,
        train_dataset=data, processing_class=tok, peft_config=lora, callbacks=[StepClock()],
        prompt_source=source,
    )
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its log dicts; keep stdout JSON
            trainer.train()
    finally:
        if client is not None:
            client.close()
    all_groups = [g for step in groups for g in step]
    half = len(groups) // 2
    rec = {
        "arm": arm,
        "steps": len(groups),
        "groups": len(all_groups),
        "effective_ratio": round(effective_ratio(all_groups), 4),
        "effective_ratio_second_half": round(effective_ratio([g for s in groups[half:] for g in s]), 4),
        "effective_ratio_per_step": [round(effective_ratio(s), 3) for s in groups],
        "success_rate": round(sum(s for _, s, _ in all_groups) / sum(k for _, _, k in all_groups), 4),
        "distinct_prompts": len({i for i, _, _ in all_groups}),
        "mean_step_s": round(sum(step_s) / len(step_s), 1) if step_s else None,
        "run_wall_s": round(time.perf_counter() - t0, 1),
        "loadavg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }
    if source is not None:
        rec["server_effective_ratio_per_step"] = [t["effective_ratio"] for t in source.telemetry]
    print(json.dumps(rec), flush=True)
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arms", default="trl,mopps", help="comma-separated: trl (TRL's own sampler), mopps, dps")
    ap.add_argument("--steps", type=int, default=10, help="optimizer steps per arm (one generation batch each)")
    ap.add_argument("--prompts", type=int, default=8, help="prompts per step")
    ap.add_argument("--group-size", type=int, default=4, help="completions per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pool", default=DEFAULT_POOL, help="JSONL with question and answer fields")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="HF folder (scripts/gguf-to-hf.py)")
    ap.add_argument("--augur", default=os.path.join(REPO, "target", "release", "augur"))
    ap.add_argument("--workdir", default="/tmp/trl-augur-sampler", help="trainer output folders (rewritten)")
    args = ap.parse_args()

    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if not arms or any(a not in ("trl", "mopps", "dps") for a in arms):
        sys.exit(f"trl_augur_sampler: --arms takes a comma-separated subset of trl, mopps, dps (got {args.arms!r})")
    if not os.path.exists(os.path.join(args.model, "config.json")):
        sys.exit(f"trl_augur_sampler: no HF model at {args.model}: run scripts/fetch-assets.sh and scripts/gguf-to-hf.py")
    if any(a != "trl" for a in arms) and not os.access(args.augur, os.X_OK):
        sys.exit(f"trl_augur_sampler: no augur binary at {args.augur} (cargo build --release -p augur-cli)")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch is imported; see scripts/bench_trl.py
    results = {a: run_arm(a, args) for a in arms}
    print(json.dumps({"compare": "effective_ratio", **{a: r["effective_ratio"] for a, r in results.items()},
                      "second_half": {a: r["effective_ratio_second_half"] for a, r in results.items()},
                      "omp_wait_policy": os.environ["OMP_WAIT_POLICY"]}), flush=True)


if __name__ == "__main__":
    main()
