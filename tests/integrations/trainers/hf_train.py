"""A few steps of the HF Trainer on a tiny model built from a config (no download), random tokens.

    python hf_train.py native|wandb [--moe]

native: ``callbacks=[ExpertrackCallback()]``; wandb: ``report_to="wandb"`` (run it under the stand-in).
Writes ``logged.json``: the Trainer's own ``log_history``, for the test to compare with the store.
"""

import json
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM, MixtralConfig, MixtralForCausalLM, Trainer, TrainingArguments

mode, moe = sys.argv[1], "--moe" in sys.argv
torch.manual_seed(0)
sizes = dict(
    vocab_size=64,
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=2,
    max_position_embeddings=32,
)
if moe:
    model = MixtralForCausalLM(MixtralConfig(num_local_experts=4, num_experts_per_tok=2, **sizes))
else:
    model = LlamaForCausalLM(LlamaConfig(**sizes))


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n):
        self.ids = torch.randint(0, 64, (n, 16))

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


args = TrainingArguments(
    output_dir="out",
    max_steps=6,
    per_device_train_batch_size=4,
    per_device_eval_batch_size=4,
    logging_steps=2,
    eval_strategy="steps",
    eval_steps=3,
    save_strategy="no",
    report_to="wandb" if mode == "wandb" else "none",
    use_cpu=True,
    disable_tqdm=True,
    learning_rate=1e-3,
    run_name="tiny-hf",
    dataloader_num_workers=0,
)
callbacks = []
if mode == "native":
    from expertrack.integrations.transformers import ExpertrackCallback

    callbacks.append(ExpertrackCallback(project="hf"))
trainer = Trainer(model=model, args=args, train_dataset=Tokens(24), eval_dataset=Tokens(8), callbacks=callbacks)
trainer.train()
if trainer.is_world_process_zero():
    with open("logged.json", "w") as f:
        json.dump(trainer.state.log_history, f)
