"""Two integrations in one distributed launch (torchrun, gloo on CPU): the HF Trainer with ExpertrackCallback,
then an Accelerate loop with ExpertrackTracker. Each should make one run, from rank zero, whatever the number
of processes. Each rank writes ``rank<N>.json`` with what it logged (the test compares rank zero's with the store).
"""

import json
import os

import torch
from accelerate import Accelerator
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

from expertrack.integrations.accelerate import ExpertrackTracker
from expertrack.integrations.transformers import ExpertrackCallback

rank = int(os.environ["RANK"])
torch.manual_seed(0)
model = LlamaForCausalLM(
    LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
)
ids = torch.randint(0, 64, (16, 8))
dataset = [{"input_ids": row, "labels": row} for row in ids]
args = TrainingArguments(
    output_dir="out",
    max_steps=4,
    per_device_train_batch_size=2,
    logging_steps=1,
    save_strategy="no",
    report_to="none",
    use_cpu=True,
    disable_tqdm=True,
    run_name="ranks-hf",
)
trainer = Trainer(model=model, args=args, train_dataset=dataset, callbacks=[ExpertrackCallback(project="ranks")])
trainer.train()

accelerator = Accelerator(cpu=True, log_with=[ExpertrackTracker("ranks", name="ranks-accelerate")])
accelerator.init_trackers("ranks", config={"world_size": accelerator.num_processes})
logged = []
for step in range(3):
    value = float(step + 10 * rank)  # a rank's own value: only rank zero's may be stored
    accelerator.log({"rank_value": value}, step=step)
    logged.append(value)
accelerator.end_training()
with open(f"rank{rank}.json", "w") as f:
    json.dump({"world_size": accelerator.num_processes, "hf": trainer.state.log_history, "accelerate": logged}, f)
