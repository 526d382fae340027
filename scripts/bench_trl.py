#!/usr/bin/env python3
"""One GRPO training step on CPU, side by side: augur vs Python TRL `GRPOTrainer` + PEFT (issue 6).

Both engines train the same LoRA adapter on the same kind of batch, back to back in one run:

  model   SmolLM2-135M-Instruct, f32 HF folder (scripts/gguf-to-hf.py), torch/augur on 2 threads
  LoRA    r=8, alpha=16, dropout 0, on q_proj, k_proj, v_proj, o_proj
  batch   4 prompts x 8 completions = 32 completions per step, from datasets/arith/train.jsonl
          (`question` as one chat-templated user message), max 32 new tokens, temperature 1.0,
          top_p 1.0, top_k off; one optimizer step per rollout batch (micro-batches of 8, gradients
          accumulated), 1 iteration per batch, beta 0 (no reference model), AdamW lr 3e-4 constant,
          max_grad_norm 1.0, reward 1.0 when the completion's last number equals `answer`.

  augur   `augur grpo` with configs/quickstart.toml's settings (written out in full to
          <workdir>/augur.toml, no eval) and the model path above; per-step times come from its
          metrics.jsonl (time_step_s, time_rollout_s = the generate call, time_update_s =
          forward/backward/optimizer). The process's CPU time is polled between metrics lines.
  TRL     GRPOTrainer(use_cpu, f32, no vLLM, per_device_train_batch_size 8 x gradient_accumulation
          4 = generation_batch_size 32, gradient checkpointing off as in augur); a TrainerCallback
          takes the wall clock from on_step_begin to on_step_end, a subclass times the generate call
          (`_generate_single_turn`) and the whole rollout (`_generate_and_score_completions`:
          tokenize, generate, decode, reward, advantages); update = step - rollout.

Step 1 is a warm-up in both engines (one-time allocations, thread pools, first-call overheads) and
is reported separately (warmup_step_s); the means are over steps 2..N. Both engines are seeded and
repeat their own batches exactly from run to run, but they do not draw the same prompts or sample
the same completions (separate shuffles and RNGs): completion_tokens_per_step says how much each
one generated. Prints one JSON line per engine and one comparison line on stdout (everything else
goes to stderr), e.g.

  {"engine": "augur", "steps_measured": 2, "mean_step_s": ..., "mean_gen_s": ..., "mean_update_s": ...,
   "completion_tokens_per_step": ..., "mean_step_cpu_s": ..., "loadavg_1m": [start, end], ...}
  {"engine": "trl", ...}
  {"bench": "grpo_step", "ratio_trl_over_augur_step": ..., ...}

The load matters a lot: with more runnable threads than cores both engines slow down, and torch's
OpenMP thread pool (busy-waiting at every op's barrier) much more than augur, generation above all.
On a loaded machine OMP_WAIT_POLICY=PASSIVE (in the environment, read when torch is imported)
removes most of that penalty (32 x 32-token generation alone: 110-126 s -> 19-22 s at a load of
~7.7); on an idle machine it does not help, so the default is left alone; the TRL line reports it.
The 1-minute load average is printed at the start and end of each engine and at the end of each
step (loadavg_1m_steps), with CPU seconds per step (all threads, including busy-waiting); compare
runs only at similar loads, and prefer numbers taken on an otherwise idle machine.

Usage (from the repository root; trl is not in requirements-dev.txt, install it as below):
  .venv/bin/pip install -c <(printf 'torch==2.15.0\\ntransformers==5.24.0\\npeft==0.21.2\\naccelerate==1.15.0\\n') trl==1.16.0
  .venv/bin/python scripts/bench_trl.py [--steps 3] [--augur PATH] [--engines augur,trl] [--augur-set KEY=VALUE ...]
--augur-set passes `--set KEY=VALUE` to augur, e.g. `--augur-set model.dtype=bf16` for bf16 weights.
--augur defaults to target/release/augur; copy it elsewhere first if someone may rebuild it while
the bench runs. With --steps 3 a run takes ~2.5 minutes on an idle 2-core machine (10-25 minutes
at a load of 7-9).
--engines trl,augur reverses the order, to check for drift in the load.
"""

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_common  # noqa: E402
from bench_common import REPO, log, loadavg, mean  # noqa: E402
from trl_setup import grpo_config, last_number_reward, load_model, load_prompts, lora_config  # noqa: E402

DATASET = "datasets/arith/train.jsonl"  # relative to the repository root, as in quickstart.toml

# The batch and the optimizer, shared by both engines.
PROMPTS_PER_STEP = 4
GROUP_SIZE = 8
MICRO_BATCH = 8
MAX_NEW_TOKENS = 32
TEMPERATURE = 1.0
TOP_P = 1.0
LORA_RANK = 8
LORA_ALPHA = 16
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
LR = 3e-4
MAX_GRAD_NORM = 1.0
BETA = 0.0
SEED = 0


def augur_config(model, run_dir, steps):
    """The augur run configuration (configs/quickstart.toml's settings, written out in full so that
    edits to that file, e.g. an [eval] section, neither change the bench nor break an older binary)."""
    targets = ", ".join(json.dumps(t.removesuffix("_proj")) for t in LORA_TARGETS)
    return f"""\
[model]
path = {json.dumps(model)}
name = "HuggingFaceTB/SmolLM2-135M-Instruct"

[lora]
rank = {LORA_RANK}
alpha = {float(LORA_ALPHA)}
targets = [{targets}]

[data]
train = "{DATASET}"
prompt_field = "question"
seed = {SEED}

[rollout]
prompts_per_step = {PROMPTS_PER_STEP}
group_size = {GROUP_SIZE}
temperature = {TEMPERATURE}
top_p = {TOP_P}
max_new_tokens = {MAX_NEW_TOKENS}
seed = {SEED}

[reward]
task = "math"

[algorithm]
steps = {steps}
micro_batch_size = {MICRO_BATCH}

[algorithm.loss]
beta = {BETA}
""" + bench_common.config_tail(LR, MAX_GRAD_NORM, run_dir)


def summarize(engine, steps, extra):
    """steps: one dict per optimizer step with step_s, gen_s, update_s, cpu_s, completion_tokens,
    reward and load (the 1-minute load average when the step ended)."""
    warm, measured = steps[0], steps[1:]
    gen_s = [s["gen_s"] for s in measured]
    toks = [s["completion_tokens"] for s in measured]
    rec = {
        "engine": engine,
        "steps_measured": len(measured),
        "mean_step_s": mean([s["step_s"] for s in measured]),
        "mean_gen_s": mean(gen_s),
        "mean_update_s": mean([s["update_s"] for s in measured]),
        "mean_other_s": mean([s["step_s"] - s["gen_s"] - s["update_s"] for s in measured]),
        "completion_tokens_per_step": mean(toks),
        "gen_tokens_per_s": round(sum(toks) / sum(gen_s), 1) if measured else None,
        "mean_step_cpu_s": mean([s["cpu_s"] for s in measured if s.get("cpu_s") is not None]),
        "warmup_step_s": round(warm["step_s"], 3),
        "steps_s": [round(s["step_s"], 2) for s in steps],
        "reward_mean": [round(s["reward"], 3) for s in steps],
        "loadavg_1m_steps": [s["load"] for s in steps],
    }
    rec.update(extra)
    print(json.dumps(rec), flush=True)
    return rec


# ---------------------------------------------------------------------------------------------
# augur


def run_augur(args):
    """Runs `augur grpo`; CPU seconds per step come from polling the process between metrics lines."""
    run_dir = os.path.join(args.workdir, "augur")
    lines, load_at_line, cpu_at_line, extra = bench_common.run_augur(
        args, "grpo", "augur", augur_config(args.model, run_dir, args.steps))
    # Keys: the metrics.jsonl schema in crates/augur-train/src/metrics.rs (StepMetrics).
    rows = PROMPTS_PER_STEP * GROUP_SIZE
    steps = []
    for i, m in enumerate(lines):
        steps.append({
            "step_s": m["time_step_s"],
            "gen_s": m["time_rollout_s"],
            "update_s": m["time_update_s"] + m.get("time_reference_s", 0.0),
            "completion_tokens": m["response_len"] * rows,
            "reward": m["reward_mean"],
            "load": load_at_line[i] if i < len(load_at_line) else loadavg(),
            # the poll sees line i up to 0.1 s late; step 1 has no start mark (model load before it)
            "cpu_s": cpu_at_line[i] - cpu_at_line[i - 1] if 0 < i < len(cpu_at_line) else None,
        })
    return summarize("augur", steps, extra)


# ---------------------------------------------------------------------------------------------
# TRL

def run_trl(args):
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    class TimedGRPOTrainer(GRPOTrainer):
        """GRPOTrainer that records the wall time of its generate call and of the whole rollout."""

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.bench = {"gen_s": 0.0, "rollout_s": 0.0, "completion_tokens": 0}

        def _generate_single_turn(self, *a, **kw):
            t0 = time.perf_counter()
            completion_ids, logprobs = super()._generate_single_turn(*a, **kw)
            self.bench["gen_s"] += time.perf_counter() - t0
            self.bench["completion_tokens"] += sum(len(c) for c in completion_ids)
            return completion_ids, logprobs

        def _generate_and_score_completions(self, inputs):
            t0 = time.perf_counter()
            out = super()._generate_and_score_completions(inputs)
            self.bench["rollout_s"] += time.perf_counter() - t0
            return out

    class StepTimer(TrainerCallback):
        """Wall and CPU time of each optimizer step (on_step_begin .. on_step_end), plus TRL's logs."""

        def __init__(self):
            self.trainer = None
            self.steps = []

        def on_step_begin(self, *_, **__):
            self.trainer.bench.update(gen_s=0.0, rollout_s=0.0, completion_tokens=0)
            self.t0, self.cpu0 = time.perf_counter(), time.process_time()

        def on_step_end(self, *_, **__):
            b = self.trainer.bench
            step_s = time.perf_counter() - self.t0
            self.steps.append({"step_s": step_s, "gen_s": b["gen_s"], "update_s": step_s - b["rollout_s"],
                               "cpu_s": time.process_time() - self.cpu0, "load": loadavg(),
                               "completion_tokens": b["completion_tokens"]})

        def on_log(self, _args, state, _control, logs=None, **__):
            if logs and "reward" in logs and self.steps:
                self.steps[-1]["reward"] = logs["reward"]
                s = self.steps[-1]
                log(f"trl step {state.global_step}  reward {logs['reward']:.3f}  "
                    f"len {logs.get('completions/mean_length', float('nan')):.1f}  "
                    f"step {s['step_s']:.1f}s  gen {s['gen_s']:.1f}s  update {s['update_s']:.1f}s")

    tok, model = load_model(args.model, args.threads, SEED)
    data = load_prompts(os.path.join(REPO, DATASET))
    out_dir = os.path.join(args.workdir, "trl")
    shutil.rmtree(out_dir, ignore_errors=True)
    # one optimizer step = one rollout batch of 32 completions, in micro-batches of 8
    config = grpo_config(out_dir, seed=SEED, steps=args.steps, micro_batch=MICRO_BATCH,
                         rows=PROMPTS_PER_STEP * GROUP_SIZE, group_size=GROUP_SIZE,
                         max_new_tokens=MAX_NEW_TOKENS, temperature=TEMPERATURE, top_p=TOP_P, beta=BETA,
                         lr=LR, max_grad_norm=MAX_GRAD_NORM)
    lora = lora_config(LORA_RANK, LORA_ALPHA, LORA_TARGETS)
    timer = StepTimer()
    trainer = TimedGRPOTrainer(model=model, reward_funcs=last_number_reward, args=config, train_dataset=data,
                               processing_class=tok, peft_config=lora, callbacks=[timer])
    timer.trainer = trainer

    extra = bench_common.train_timed(trainer, config.optim)
    for s in timer.steps:
        s.setdefault("reward", float("nan"))
    return summarize("trl", timer.steps, extra)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps per engine; step 1 is warm-up")
    bench_common.add_augur_args(ap, "/tmp/bench-trl")
    ap.add_argument("--engines", default="augur,trl", help="comma-separated, run in this order")
    args = ap.parse_args()

    if args.steps < 2:
        sys.exit("bench_trl: --steps must be at least 2 (step 1 is the warm-up)")
    if not os.path.exists(os.path.join(args.model, "config.json")):
        sys.exit(f"bench_trl: no HF model at {args.model}: run scripts/fetch-assets.sh and scripts/gguf-to-hf.py")
    runners = {"augur": run_augur, "trl": run_trl}
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not engines or any(e not in runners for e in engines):
        sys.exit(f"bench_trl: --engines takes a comma-separated subset of {sorted(runners)}")
    if "augur" in engines and not os.access(args.augur, os.X_OK):
        sys.exit(f"bench_trl: no augur binary at {args.augur} (cargo build --release -p augur-cli)")

    results = {e: runners[e](args) for e in engines}
    if {"augur", "trl"} <= results.keys():
        a, t = results["augur"], results["trl"]

        def ratio(key):
            return round(t[key] / a[key], 2) if a[key] and t[key] else None

        print(json.dumps({
            "bench": "grpo_step",
            "ratio_trl_over_augur_step": ratio("mean_step_s"),
            "ratio_trl_over_augur_gen": ratio("mean_gen_s"),
            "ratio_trl_over_augur_update": ratio("mean_update_s"),
            "ratio_trl_over_augur_step_cpu": ratio("mean_step_cpu_s"),
            "loadavg_1m_end": loadavg(),
        }), flush=True)


if __name__ == "__main__":
    main()
