#!/usr/bin/env python3
"""SFT training throughput on CPU, side by side: `augur sft` vs Python TRL `SFTTrainer` + PEFT
(issue 15), and the selection overhead of each `augur sft` selection method.

Both engines train the same LoRA adapter on the same examples, back to back in one run:

  model   SmolLM2-135M-Instruct, f32 HF folder (scripts/gguf-to-hf.py), torch/augur on 2 threads
  LoRA    r=8, alpha=16, dropout 0, on q_proj, k_proj, v_proj, o_proj
  data    GSM8K train rows (datasets/gsm8k/train.jsonl): `question` as one chat-templated user
          turn, `answer` as the assistant's completion; loss on the completion tokens only;
          sequences capped at 384 tokens
  batch   8 examples per optimizer step in micro-batches of 4 (gradients accumulated), AdamW
          lr 3e-4 constant, max_grad_norm 1.0

  augur   `augur sft` with `[selection] method = "uniform"`, candidates = keep = 8 (no scoring:
          every drawn example is trained on); per-step numbers from its metrics.jsonl
          (time_train_s = forward/backward/optimizer, train_tokens_per_s = input tokens / that).
          augur's default `[train] packing = true` packs a step's examples into rows of up to
          384 tokens, each example attending only to itself (same loss as unpacked);
          `--augur-set train.packing=false` runs one example per row, padded like TRL.
  TRL     SFTTrainer(use_cpu, f32, per_device_train_batch_size 4 x gradient_accumulation 2,
          max_length 384, completion-only loss (TRL's default for prompt/completion data),
          gradient checkpointing off as in augur, no packing, no padding-free: TRL's padding-free
          packing needs FlashAttention, which the CPU lacks). Its data are the
          examples augur trained on, in augur's order (read from metrics.jsonl's `selected`),
          with the sampler set to sequential, so both engines see exactly the same rows.
          A TrainerCallback takes the wall clock from on_step_begin to on_step_end; the tokens
          are the real (attention-mask) tokens of the step's micro-batches.

Tokens per second count real (non-padding) input tokens: augur feeds each example's tokens but
the last (teacher forcing), TRL feeds all of them, a difference of one token per example (~0.6%
at GSM8K's ~170 tokens), in TRL's favour. Step 1 is a warm-up in both engines and is reported
separately; the means are over steps 2..N.

`--overhead` adds one short `augur sft` run per selection method (uniform, uds, maxloss, rho;
candidates 16, keep 4, i.e. keep 1 of 4, micro-batch 4) and reports the scoring forward's share
of the step time (metrics.jsonl: time_score_s / time_step_s), measured steps 2..N.

Prints one JSON line per engine (and per overhead run) and one comparison line on stdout
(everything else goes to stderr). The 1-minute load average is printed at each engine's start
and end: compare runs only at similar loads, and prefer an otherwise idle machine. On a loaded
machine OMP_WAIT_POLICY=PASSIVE (in the environment) keeps torch's thread pool from busy-waiting;
the TRL line reports it.

Usage (from the repository root):
  /path/to/venv/bin/python scripts/bench_trl_sft.py [--steps 4] [--augur PATH] \\
      [--engines augur,trl] [--overhead] [--augur-set KEY=VALUE ...] [--trl-bf16]
--augur-set passes `--set KEY=VALUE` to augur, e.g. `--augur-set model.dtype=bf16` for bf16 weights.
--trl-bf16 runs TRL in its CPU mixed precision (`bf16=True`: torch.autocast to bf16 over the f32
weights), the peer of augur's bf16 frozen weights; without it TRL trains in f32.
--augur defaults to target/release/augur; copy it elsewhere first if someone may rebuild it
while the bench runs. The TRL engine needs the augur run first (it reads augur's example order),
so --engines takes augur,trl or augur alone.
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

DATASET = "datasets/gsm8k/train.jsonl"  # relative to the repository root

# The batch and the optimizer, shared by both engines.
EXAMPLES_PER_STEP = 8
MICRO_BATCH = 4
MAX_SEQ_LEN = 384
LORA_RANK = 8
LORA_ALPHA = 16
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
LR = 3e-4
MAX_GRAD_NORM = 1.0
SEED = 0
# The selection-overhead runs: keep 1 of 4 (UDS's default ratio).
OVERHEAD_METHODS = ["uniform", "uds", "maxloss", "rho"]
OVERHEAD_CANDIDATES = 16
OVERHEAD_KEEP = 4


def augur_config(model, run_dir, steps, method="uniform", candidates=EXAMPLES_PER_STEP,
                 keep=EXAMPLES_PER_STEP):
    """The augur run configuration, written out in full (no eval, no intermediate checkpoints)."""
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
completion_field = "answer"
max_seq_len = {MAX_SEQ_LEN}
seed = {SEED}

[train]
steps = {steps}
micro_batch_size = {MICRO_BATCH}

[selection]
method = "{method}"
candidates = {candidates}
keep = {keep}
seed = {SEED}
""" + bench_common.config_tail(LR, MAX_GRAD_NORM, run_dir)


def summarize(engine, steps, extra):
    """steps: one dict per optimizer step with step_s, train_s, tokens (real input tokens) and
    load (the 1-minute load average when the step ended)."""
    warm, measured = steps[0], steps[1:]
    rec = {
        "engine": engine,
        "steps_measured": len(measured),
        "mean_step_s": mean([s["step_s"] for s in measured]),
        "mean_train_s": mean([s["train_s"] for s in measured]),
        "tokens_per_step": mean([s["tokens"] for s in measured]),
        "train_tokens_per_s": round(sum(s["tokens"] for s in measured) / sum(s["train_s"] for s in measured), 1),
        "warmup_step_s": round(warm["step_s"], 3),
        "steps_s": [round(s["step_s"], 2) for s in steps],
        "tokens": [s["tokens"] for s in steps],
        "loss": [round(s["loss"], 4) for s in steps],
        "loadavg_1m_steps": [s["load"] for s in steps],
    }
    rec.update(extra)
    print(json.dumps(rec), flush=True)
    return rec


# ---------------------------------------------------------------------------------------------
# augur


def run_augur_sft(args, name, **config):
    """Runs `augur sft` into <workdir>/<name>; returns its training lines, per-line load, and extras."""
    run_dir = os.path.join(args.workdir, name)
    lines, load_at_line, _, extra = bench_common.run_augur(
        args, "sft", name, augur_config(args.model, run_dir, args.steps, **config))
    # Keys: the metrics.jsonl schema in crates/augur-train/src/metrics.rs (SftStepMetrics).
    lines = [m for m in lines if "loss" in m]  # training lines (no step-0 eval line here)
    loads = [load_at_line[i] if i < len(load_at_line) else loadavg() for i in range(len(lines))]
    return lines, loads, extra


def run_augur(args):
    lines, loads, extra = run_augur_sft(args, "augur")
    steps = [{
        "step_s": m["time_step_s"],
        "train_s": m["time_train_s"],
        "tokens": round(m["train_tokens_per_s"] * m["time_train_s"]),
        "loss": m["loss"],
        "load": load,
    } for m, load in zip(lines, loads)]
    rec = summarize("augur", steps, extra)
    rec["selected"] = [m["selected"] for m in lines]
    return rec


def run_overhead(args):
    """One short run per selection method; the scoring share of each measured step."""
    out = []
    for method in OVERHEAD_METHODS:
        lines, loads, extra = run_augur_sft(args, f"overhead-{method}", method=method,
                                            candidates=OVERHEAD_CANDIDATES, keep=OVERHEAD_KEEP)
        measured = lines[1:]
        score = sum(m["time_score_s"] for m in measured)
        step = sum(m["time_step_s"] for m in measured)
        rec = {
            "overhead": method,
            "candidates": OVERHEAD_CANDIDATES,
            "keep": OVERHEAD_KEEP,
            "steps_measured": len(measured),
            "mean_score_s": mean([m["time_score_s"] for m in measured]),
            "mean_train_s": mean([m["time_train_s"] for m in measured]),
            "mean_step_s": mean([m["time_step_s"] for m in measured]),
            "score_share": round(score / step, 3) if step else None,
            "score_share_steps": [round(m["score_share"], 3) for m in lines],
            "loadavg_1m_steps": loads,
            **extra,
        }
        print(json.dumps(rec), flush=True)
        out.append(rec)
    return out


# ---------------------------------------------------------------------------------------------
# TRL


def run_trl(args, selected):
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)

    class CountingSFTTrainer(SFTTrainer):
        """SFTTrainer that counts the real tokens of each micro-batch it trains on."""

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.step_tokens = 0

        def training_step(self, model, inputs, *a, **kw):
            self.step_tokens += int(inputs["attention_mask"].sum())
            return super().training_step(model, inputs, *a, **kw)

    class StepTimer(TrainerCallback):
        """Wall time of each optimizer step (on_step_begin .. on_step_end), its tokens and loss."""

        def __init__(self):
            self.trainer = None
            self.steps = []

        def on_step_begin(self, *_, **__):
            self.trainer.step_tokens = 0
            self.t0 = time.perf_counter()

        def on_step_end(self, *_, **__):
            step_s = time.perf_counter() - self.t0
            self.steps.append({"step_s": step_s, "train_s": step_s, "tokens": self.trainer.step_tokens,
                               "load": loadavg(), "loss": float("nan")})

        def on_log(self, _args, state, _control, logs=None, **__):
            if logs and "loss" in logs and self.steps:
                self.steps[-1]["loss"] = logs["loss"]
                s = self.steps[-1]
                log(f"trl step {state.global_step}  loss {logs['loss']:.4f}  step {s['step_s']:.1f}s  "
                    f"{s['tokens']} tokens")

    with open(os.path.join(REPO, DATASET)) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    order = [i for step in selected for i in step]
    data = Dataset.from_list([{
        "prompt": [{"role": "user", "content": rows[i]["question"]}],
        "completion": [{"role": "assistant", "content": rows[i]["answer"]}],
    } for i in order])

    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    out_dir = os.path.join(args.workdir, "trl")
    shutil.rmtree(out_dir, ignore_errors=True)
    config = SFTConfig(
        output_dir=out_dir,
        use_cpu=True,
        bf16=args.trl_bf16,
        fp16=False,
        seed=SEED,
        max_steps=len(selected),
        per_device_train_batch_size=MICRO_BATCH,
        gradient_accumulation_steps=EXAMPLES_PER_STEP // MICRO_BATCH,
        train_sampling_strategy="sequential",  # augur's order, as given
        max_length=MAX_SEQ_LEN,
        packing=False,
        padding_free=False,
        completion_only_loss=True,
        learning_rate=LR,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=MAX_GRAD_NORM,
        gradient_checkpointing=False,  # SFTConfig defaults to True; augur keeps the activations
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    lora = LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, lora_dropout=0.0, target_modules=LORA_TARGETS,
                      bias="none", task_type="CAUSAL_LM")
    timer = StepTimer()
    trainer = CountingSFTTrainer(model=model, args=config, train_dataset=data, processing_class=tok,
                                 peft_config=lora, callbacks=[timer])
    timer.trainer = trainer

    extra = bench_common.train_timed(trainer, config.optim)
    extra["precision"] = "bf16 autocast" if args.trl_bf16 else "f32"
    return summarize("trl", timer.steps, extra)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4, help="optimizer steps per engine; step 1 is warm-up")
    bench_common.add_augur_args(ap, "/tmp/bench-trl-sft")
    ap.add_argument("--engines", default="augur,trl", help="augur,trl (TRL replays augur's examples) or augur")
    ap.add_argument("--overhead", action="store_true", help="also time selection per method (augur)")
    ap.add_argument("--trl-bf16", action="store_true", help="TRL with bf16 autocast (bf16=True) instead of f32")
    args = ap.parse_args()

    if args.steps < 2:
        sys.exit("bench_trl_sft: --steps must be at least 2 (step 1 is the warm-up)")
    if not os.path.exists(os.path.join(args.model, "config.json")):
        sys.exit(f"bench_trl_sft: no HF model at {args.model}: run scripts/fetch-assets.sh and scripts/gguf-to-hf.py")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if engines not in (["augur"], ["augur", "trl"]):
        sys.exit("bench_trl_sft: --engines takes augur,trl or augur (TRL trains on augur's examples)")
    if not os.access(args.augur, os.X_OK):
        sys.exit(f"bench_trl_sft: no augur binary at {args.augur} (cargo build --release -p augur-cli)")

    a = run_augur(args)
    if "trl" in engines:
        t = run_trl(args, a["selected"])
        print(json.dumps({
            "bench": "sft_step",
            "ratio_augur_over_trl_tokens_per_s": round(a["train_tokens_per_s"] / t["train_tokens_per_s"], 2),
            "ratio_trl_over_augur_step": round(t["mean_step_s"] / a["mean_step_s"], 2),
            "loadavg_1m_end": loadavg(),
        }), flush=True)
    if args.overhead:
        run_overhead(args)


if __name__ == "__main__":
    main()
