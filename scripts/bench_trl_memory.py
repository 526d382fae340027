#!/usr/bin/env python3
"""Peak memory of one GRPO policy update in TRL + PEFT, on the batch `update_bench` uses (issue 20).

The twin of `cargo run --release -p augur-train --example update_bench -- MODEL ROWS PROMPT_LEN
COMPLETION_LEN 0 MICRO 256 RANK all [CHECKPOINTING]`: the same rows (ROWS completions, groups of 8
sharing a prompt, the same pseudo-random token ids, advantages alternating +1/-1, rollout logprobs
-3), one optimizer step with gradients accumulated over micro-batches of MICRO rows, LoRA of rank
RANK (alpha 2·RANK, dropout 0) on q/k/v/o/gate/up/down, f32 on the CPU, beta 0.

The loss is TRL's own: `GRPOTrainer.compute_loss` (its `_get_per_token_logps_and_entropies`,
whole `[B, C, V]` logits, entropies on) on each micro-batch, `backward()`, then one AdamW step.
No generation runs: only the update is measured, as in update_bench. `--checkpointing` turns on
`gradient_checkpointing` (HF's, non-reentrant), TRL's counterpart of
`[algorithm] activation_checkpointing`.

Prints one JSON line with the peak RSS after loading (model + adapters) and after the update
(`ru_maxrss`, kB), the update's wall time and the 1-minute load average.

Usage: /work/venv-torch/bin/python scripts/bench_trl_memory.py MODEL_DIR [--rows 8]
       [--prompt-len 128] [--completion-len 384] [--micro 8] [--rank 64] [--checkpointing]
"""

import argparse
import json
import os
import resource
import time


def peak_rss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--completion-len", type=int, default=384)
    ap.add_argument("--micro", type=int, default=8)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--checkpointing", action="store_true")
    a = ap.parse_args()

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(a.model)
    cfg = GRPOConfig(
        output_dir="/tmp/bench-trl-memory",
        use_cpu=True,
        per_device_train_batch_size=a.micro,
        gradient_accumulation_steps=max(1, a.rows // a.micro),
        num_generations=8,
        beta=0.0,
        learning_rate=1e-5,
        gradient_checkpointing=a.checkpointing,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
    )
    lora = LoraConfig(
        r=a.rank,
        lora_alpha=2 * a.rank,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM",
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=lambda completions, **kw: [0.0] * len(completions),
        args=cfg,
        train_dataset=Dataset.from_list([{"prompt": "x"}] * 8),
        processing_class=tok,
        peft_config=lora,
    )
    policy = trainer.model
    policy.train()
    trainer.create_optimizer()
    after_load = peak_rss_kb()

    vocab = policy.config.vocab_size

    def tok_id(r, t):
        return (r * 7919 + t * 104_729) % (vocab - 200) + 100

    rows = range(a.rows)
    prompt = torch.tensor([[tok_id(r // 8, t) for t in range(a.prompt_len)] for r in rows])
    completion = torch.tensor(
        [[tok_id(r, a.prompt_len + t) for t in range(a.completion_len)] for r in rows]
    )
    advantages = torch.tensor([1.0 if r % 2 == 0 else -1.0 for r in rows])
    old = torch.full((a.rows, a.completion_len), -3.0)
    micro_batches = list(range(0, a.rows, a.micro))
    trainer.current_gradient_accumulation_steps = len(micro_batches)
    trainer._step = 0

    t0 = time.time()
    for s in micro_batches:
        e = min(s + a.micro, a.rows)
        inputs = {
            "prompt_ids": prompt[s:e],
            "prompt_mask": torch.ones_like(prompt[s:e]),
            "completion_ids": completion[s:e],
            "completion_mask": torch.ones_like(completion[s:e]),
            "advantages": advantages[s:e],
            "old_per_token_logps": old[s:e],
            "num_items_in_batch": torch.tensor(float(a.rows * a.completion_len)),
        }
        loss = trainer.compute_loss(policy, inputs)
        loss.backward()
    trainer.optimizer.step()
    trainer.optimizer.zero_grad()
    secs = time.time() - t0
    print(
        json.dumps(
            {
                "bench": "trl_update_memory",
                "rows": a.rows,
                "prompt_len": a.prompt_len,
                "completion_len": a.completion_len,
                "micro_batch": a.micro,
                "lora_rank": a.rank,
                "gradient_checkpointing": a.checkpointing,
                "torch_threads": torch.get_num_threads(),
                "seconds": secs,
                "peak_rss_after_load_kb": after_load,
                "peak_rss_kb": peak_rss_kb(),
                "loadavg_1m": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
