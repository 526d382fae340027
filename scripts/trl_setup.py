"""The TRL side of augur's GRPO comparisons, shared by scripts/bench_trl.py (step time against
`augur grpo`) and scripts/examples/trl_augur_sampler.py (TRL with `augur sampler` choosing its
prompts): the reward, the prompt dataset, the model, and a GRPOConfig / LoRA config that match
augur's run (CPU, f32, no vLLM, constant LR, no checkpoints or evaluation, activations kept).

torch, transformers, trl, peft and datasets are imported inside the functions, so the module
(and `last_number_reward`) loads without them.
"""

from __future__ import annotations

import re

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def last_number_reward(completions, answer, **_):
    """1.0 when the completion's last number equals `answer` (numerically), else 0.0."""
    out = []
    for completion, ans in zip(completions, answer):
        text = completion[-1]["content"] if isinstance(completion, list) else completion
        nums = NUMBER.findall(text.replace(",", ""))
        try:
            out.append(1.0 if nums and float(nums[-1]) == float(ans) else 0.0)
        except ValueError:
            out.append(0.0)
    return out


def load_model(path: str, threads: int, seed: int):
    """(tokenizer, f32 model) of the HF folder `path`, with torch on `threads` threads and seeded."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(path)
    return tok, AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def load_prompts(path: str, with_ids: bool = False):
    """The JSONL file's `question`s as one-turn chat prompts, with their `answer`; `with_ids` adds
    each row's index as `augur_id` (the prompt id `augur sampler` knows it by)."""
    from datasets import load_dataset

    data = load_dataset("json", data_files=path, split="train")

    def row(x, i):
        out = {"prompt": [{"role": "user", "content": x["question"]}]}
        if with_ids:
            out["augur_id"] = i
        return out

    return data.map(row, with_indices=True, remove_columns=[c for c in data.column_names if c != "answer"])


def grpo_config(out_dir: str, *, seed: int, steps: int, micro_batch: int, rows: int, group_size: int,
                max_new_tokens: int, temperature: float, lr: float, top_p: float = 1.0, beta: float = 0.0,
                max_grad_norm: float = 1.0):
    """A GRPOConfig for one optimizer step per rollout batch of `rows` completions (`group_size` per
    prompt) in micro-batches of `micro_batch`, set up like an `augur grpo` run on CPU."""
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=out_dir, use_cpu=True, bf16=False, fp16=False, seed=seed, max_steps=steps,
        per_device_train_batch_size=micro_batch, gradient_accumulation_steps=rows // micro_batch,
        generation_batch_size=rows, num_generations=group_size, num_iterations=1,
        max_completion_length=max_new_tokens, temperature=temperature, top_p=top_p, top_k=0, beta=beta,
        learning_rate=lr, lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=max_grad_norm,
        activation_checkpointing=False,  # GRPOConfig defaults to True; augur keeps the activations
        use_vllm=False, logging_steps=1, report_to="none", save_strategy="no", eval_strategy="no",
        disable_tqdm=True, dataloader_num_workers=0,
    )


def lora_config(rank: int = 8, alpha: int = 16, targets=None):
    """PEFT LoRA on `targets` (default q/k/v/o), no dropout or bias, as augur's `[lora]`."""
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets or LORA_TARGETS,
                      bias="none", task_type="CAUSAL_LM")
