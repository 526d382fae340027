"""Developer check: load an augur GRPO checkpoint with Python peft and print greedy answers and
first-token logprobs; compare with `augur generate --adapter DIR --temperature 0`.
Usage: .venv/bin/python scripts/check-peft-adapter.py HF_BASE_DIR ADAPTER_DIR  (needs pip install peft)"""
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import PeftModel
base_dir, adapter_dir = sys.argv[1], sys.argv[2]
torch.set_num_threads(2)
tok = AutoTokenizer.from_pretrained(base_dir)
model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32), adapter_dir)
for q in ["What is 7 + 5? Answer with just the number.", "What is 3 * 4? Answer with just the number."]:
    ids = tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=12, do_sample=False, output_logits=True, return_dict_in_generate=True)
    new = out.sequences[0, ids.shape[1]:]
    lps = [torch.log_softmax(l[0], -1)[t].item() for l, t in zip(out.logits, new)]
    print(repr(tok.decode(new, skip_special_tokens=True)), new[:6].tolist(), [round(x, 4) for x in lps[:3]])
