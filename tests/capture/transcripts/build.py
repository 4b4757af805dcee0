"""Builds the parser test transcripts from the trainers' own printf format strings.

Each builder prints a short run the way its trainer does (the format strings are copied from the trainers'
sources: karpathy/llm.c train_gpt2.c and train_gpt2.cu, karpathy/nanoGPT train.py and configurator.py, the
seed's gpt2-cuda trainer) and records, from the same arguments, the items a parser must return: that is
what the tests check, never the parser's own output. Run this file to rewrite the .txt transcripts and the
.expected.json files next to it (the runner's end-to-end tests replay both); test_parsers_transcripts.py
fails when they drift from what the builders make.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NAN = math.nan


def printf(fmt: str, *args: Any) -> str:
    """C printf for the conversions the trainers use (Python's % matches C's for these; %zu is %d)."""
    return re.sub(r"%(-?\d*)zu", r"%\1d", fmt) % args


def _printed(fmt: str, value: float) -> float:
    """The value a reader gets back from ``value`` printed with ``fmt``."""
    return float(fmt % value)


@dataclass
class Transcript:
    """A run's raw output and the items a parser must return for it, in order."""

    name: str
    parser: str
    output: list[str] = field(default_factory=list)
    items: list[tuple[str, Any, Any]] = field(default_factory=list)  # ("metrics", step, {..}) / ("config", None, {..})

    def out(self, fmt: str, *args: Any) -> None:
        self.output.append(printf(fmt, *args))

    def metrics(self, step: int, **values: float) -> None:
        self.items.append(("metrics", step, values))

    def config(self, key: str, value: Any) -> None:
        self.items.append(("config", None, {key: value}))

    @property
    def text(self) -> str:
        return "".join(self.output)

    def expected_json(self) -> dict[str, Any]:
        """The expected run as a store holds it: merged config, and each metric's (step, value) series."""
        config: dict[str, Any] = {}
        series: dict[str, list[list[Any]]] = {}
        for kind, step, values in self.items:
            if kind == "config":
                config.update(values)
            else:
                for key, value in values.items():
                    series.setdefault(key, []).append([step, value])
        return {"parser": self.parser, "config": config, "metrics": series}


# --- the seed's gpt2-cuda trainer --------------------------------------------------------------------------


def gpt2_cuda() -> Transcript:
    """The seed's trainer: llm.c's early CUDA step line, plus avg_train/gap on val lines and a test loss."""
    t = Transcript("gpt2_cuda", "gpt2-cuda")
    rows = [
        ("model file", "%-50s", "model_grok.bin"),
        ("train data", "%-50s", "data/modular/grokking_runs/modular_addition_p97_frac0.3_train.bin"),
        ("val data", "%-50s", "data/modular/val.bin"),
        ("test data", "%-50s", "data/modular/test.bin"),
        ("sequence length T", "%-50d", 8),
        ("batch size B", "%-50d", 4703),
        ("max steps", "%-50d", 6),
        ("val_loss_every", "%-50d", 3),
        ("learning rate", "%-50e", 0.001),
        ("weight decay", "%-50f", 1.0),
        ("beta2", "%-50f", 0.98),
        ("seed", "%-50d", 1337),
    ]
    border = "+-----------------------+----------------------------------------------------+\n"
    t.out(border)
    t.out("| parameter             | value                                              |\n")
    t.out(border)
    for key, value_fmt, value in rows:
        t.out("| %-21s | " + value_fmt + " |\n", key, value)
        t.config(key, float(printf("%e", value)) if value_fmt == "%-50e" else value)
    t.out(border)
    losses = [4.612345, 4.5, 4.25, 3.999999, 3.5, 3.25]
    times = [12.3, 11.9, 12.0, 12.1, 11.8, 12.4]
    tokens = [84000, 86500, 85999, 85100, 87000, 83001]
    since_val: list[float] = []
    for step in range(6):
        t.out("step %4d/%d: train loss %f (%.1f ms, %d tok/s)\n", step + 1, 6, losses[step], times[step], tokens[step])
        t.metrics(step, train_loss=losses[step], step_time_ms=times[step], tok_per_sec=tokens[step])
        since_val.append(losses[step])
        if (step + 1) % 3 == 0:  # printed after the step line: the weights have had step + 1 updates
            val = 4.4 - step * 0.1
            avg = sum(since_val) / len(since_val)
            t.out("val loss %f (avg_train %.3f, gap %+.3f)\n", val, avg, val - avg)
            t.metrics(
                step + 1,
                val_loss=_printed("%f", val),
                avg_train_loss=_printed("%.3f", avg),
                generalization_gap=_printed("%+.3f", val - avg),
            )
            since_val = []
    t.out("test loss %f\n", 3.875)
    t.metrics(6, test_loss=3.875)
    return t


# --- llm.c: train_gpt2.c (CPU) -----------------------------------------------------------------------------


def llmc_cpu() -> Transcript:
    """train_gpt2.c: "[GPT-2]" block, val loss every 2 steps before the step, generation every 4 steps."""
    t = Transcript("llmc_cpu", "llmc")
    t.out("[GPT-2]\n")
    for key, value in [
        ("max_seq_len", 1024),
        ("vocab_size", 50257),
        ("padded_vocab_size", 50304),
        ("num_layers", 12),
        ("num_heads", 12),
        ("channels", 768),
    ]:
        t.out(key + ": %zu\n", value)
        t.config(key, value)
    t.out("num_parameters: %zu\n", 124475904)
    t.config("num_parameters", 124475904)
    t.out("train dataset num_batches: %zu\n", 1192)
    t.config("train dataset num_batches", 1192)
    t.out("val dataset num_batches: %zu\n", 128)
    t.config("val dataset num_batches", 128)
    held: list[dict[str, float]] = []
    losses = [5.356085, 4.300641, 4.623082, 4.599361, 4.616664, 4.231428]
    for step in range(6):
        if step % 2 == 0:
            val = 5.325529 - step * 0.05
            t.out("val loss %f\n", val)
            values = {"val_loss": _printed("%f", val)}
            if step == 0:
                held.append(values)  # no train line yet: held until "step 0" arrives
            else:
                t.metrics(step, **values)
        if step > 0 and step % 4 == 0:
            t.out("generating:\n---\n")
            # Generated tokens can spell anything, metric lines included: none of them may count.
            for token in [
                "The",
                " king",
                ":\n",
                "step 7: train loss 0.100000 (took 1.000000 ms)\n",
                "val loss 0.000001\n",
                "| lr | 9 |\n",
                "\n",
                "---",
                "-\n",
            ]:
                t.out("%s", token)
            t.out("\n---\n")
        t.out("step %d: train loss %f (took %f ms)\n", step, losses[step], 1452.121 + step)
        for values in held:
            t.metrics(0, **values)
        held = []
        t.metrics(step, train_loss=losses[step], step_time_ms=_printed("%f", 1452.121 + step))
    return t


# --- llm.c: train_gpt2.cu (CUDA), current step line --------------------------------------------------------

_LLMC_BORDER = "+-----------------------+----------------------------------------------------+\n"


def _llmc_table(t: Transcript, rows: list[tuple[str, str, Any]]) -> None:
    for key, value_fmt, value in rows:
        if key == "+":
            t.out(_LLMC_BORDER)
            continue
        t.out("| %-21s | " + value_fmt + " |\n", key, value)
        if value_fmt.endswith(("e", "f")):
            value = float(printf(value_fmt.replace("-50", ""), value))
        t.config(key, value)


def _llmc_cuda_table(t: Transcript, device: str, peak: float, num_batches: int) -> None:
    t.out(_LLMC_BORDER)
    t.out("| Parameter             | Value                                              |\n")
    _llmc_table(
        t,
        [
            ("+", "", None),
            ("train data pattern", "%-50s", "dev/data/fineweb10B/fineweb_train_*.bin"),
            ("val data pattern", "%-50s", "dev/data/fineweb10B/fineweb_val_shard_with_a_long_name_000000.bin"),
            ("output log dir", "%-50s", "NULL"),
            ("checkpoint_every", "%-50d", 0),
            ("resume", "%-50d", 0),
            ("micro batch size B", "%-50d", 4),
            ("sequence length T", "%-50d", 1024),
            ("total batch size", "%-50d", 4096),
            ("LR scheduler", "%-50s", "cosine"),
            ("learning rate (LR)", "%-50e", 3e-4),
            ("warmup iterations", "%-50d", 0),
            ("final LR fraction", "%-50e", 1.0),
            ("weight decay", "%-50e", 0.0),
            ("skip update lossz", "%-50f", 0.0),
            ("skip update gradz", "%-50f", 0.0),
            ("max_steps", "%-50d", num_batches),
            ("val_loss_every", "%-50d", 4),
            ("val_max_steps", "%-50d", 20),
            ("sample_every", "%-50d", 4),
            ("genT", "%-50d", 16),
            ("overfit_single_batch", "%-50d", 0),
            ("use_master_weights", "%-50s", "enabled"),
            ("gelu_fusion", "%-50d", 0),
            ("recompute", "%-50d", 1),
            ("+", "", None),
            ("device", "%-50s", device),
            ("peak TFlops", "%-50.1f", peak),
            ("precision", "%-50s", "BF16"),
            ("+", "", None),
            ("weight init method", "%-50s", "OpenAI's GPT-2 checkpoint"),
            ("max_sequence_length T", "%-50d", 1024),
            ("vocab_size V", "%-50d", 50257),
            ("padded_vocab_size Vp", "%-50d", 50304),
            ("num_layers L", "%-50d", 12),
            ("num_heads NH", "%-50d", 12),
            ("channels C", "%-50d", 768),
            ("num_parameters", "%-50zu", 124475904),
            ("+", "", None),
            ("train_num_batches", "%-50d", num_batches),
            ("val_num_batches", "%-50d", 20),
            ("+", "", None),
            ("run hellaswag", "%-50s", "yes"),
            ("+", "", None),
        ],
    )
    t.out("| Zero Optimization is disabled                                              |\n")
    _llmc_table(t, [("num_processes", "%-50d", 1), ("zero_stage", "%-50d", 0), ("+", "", None)])
    t.out("num_parameters: %zu => bytes: %zu\n", 124475904, 248951808)
    t.config("num_parameters", 124475904)
    t.out("allocated %d MiB for model parameters\n", 237)
    t.out("batch_size B=%d * seq_len T=%d * num_processes=%d and total_batch_size=%d\n", 4, 1024, 1, 4096)
    t.out("=> setting grad_accum_steps=%d\n", 1)
    t.config("grad_accum_steps", 1)
    t.out("allocating %d MiB for activations\n", 5634)


def _llmc_cuda_evals(t: Transcript, step: int, last: bool, held: list[dict[str, float]]) -> None:
    """What train_gpt2.cu prints at the top of loop step `step`: val loss, HellaSwag, a sample."""
    if step % 4 == 0 or last:
        val = 3.28 - step * 0.01
        t.out("val loss %f\n", val)
        if step == 0:
            held.append({"val_loss": _printed("%f", val)})  # no train line yet: held until the first
        else:
            t.metrics(step, val_loss=_printed("%f", val))
    if (step > 0 and step % 4 == 0) or last:
        for i in range(0, 42, 10):
            t.out("evaluating HellaSwag: %d/%d\r", i, 42)
        acc = 0.25 + step / 100
        t.out("HellaSwag: %d/%d = %f\n", round(acc * 1000), 1000, acc)
        t.metrics(step, hellaswag_acc=_printed("%f", acc))
    if (step > 0 and step % 4 == 0) or last:
        t.out("generating:\n---\n")
        t.out(
            "%s",
            "step  99/8 | loss 0.000001 (+1.00z)| norm 1.0000 (+1.00z)| lr 1.00e-04 | 1.00 ms"
            " | 99.0% bf16 MFU | 1 tok/s\nHellaSwag: 1/1 = 1.000000\ntest loss 0.0",
        )
        t.out("\n---\n")


def llmc_cuda() -> Transcript:
    """train_gpt2.cu as it prints today: z-scores (nan until the detector fills), norm, lr, MFU, HellaSwag."""
    t = Transcript("llmc_cuda", "llmc")
    _llmc_cuda_table(t, "NVIDIA H100 80GB HBM3", 989.5, 8)
    fmt = "step %4d/%d | loss %7.6f (%+.2fz)| norm %6.4f (%+.2fz)| lr %.2e | %.2f ms | %.1f%% bf16 MFU | %.0f tok/s\n"
    held: list[dict[str, float]] = []
    for step in range(9):
        last = step == 8
        _llmc_cuda_evals(t, step, last, held)
        if last:
            break
        loss, norm, lr = 3.3 - step * 0.02, 1.5 - step * 0.1, 3e-4 * (1 - step / 8)
        zloss, zgrad = (NAN, NAN) if step < 2 else (0.5 - step * 0.25, -1.25 + step * 0.5)
        ms, mfu, tok = 412.87 + step, 38.4 + step / 10, 39684 + step * 100
        t.out(fmt, step + 1, 8, loss, zloss, norm, zgrad, lr, ms, mfu, tok)
        for values in held:
            t.metrics(step, **values)
        held = []
        values = {
            "train_loss": _printed("%7.6f", loss),
            "grad_norm": _printed("%6.4f", norm),
            "lr": _printed("%.2e", lr),
            "step_time_ms": _printed("%.2f", ms),
            "tok_per_sec": _printed("%.0f", tok),
            "mfu_pct": _printed("%.1f", mfu),
        }
        if step >= 2:  # "(+nanz)" before that: not logged
            values["train_loss_z"] = _printed("%+.2f", zloss)
            values["grad_norm_z"] = _printed("%+.2f", zgrad)
        t.metrics(step, **values)
    t.out("total average iteration time: %f ms\n", 415.25)
    return t


def llmc_cuda_mid() -> Transcript:
    """train_gpt2.cu's earlier "| train loss" line, on a GPU llm.c has no peak flops for (-100.0% MFU)."""
    t = Transcript("llmc_cuda_mid", "llmc")
    _llmc_cuda_table(t, "NVIDIA GeForce RTX 9999", -1.0, 8)
    fmt = "step %4d/%d | train loss %7.6f | norm %6.4f | lr %.2e | %.2f ms | %.1f%% bf16 MFU | %.0f tok/s\n"
    held: list[dict[str, float]] = []
    for step in range(9):
        last = step == 8
        _llmc_cuda_evals(t, step, last, held)
        if last:
            break
        loss, norm, lr, ms, tok = 3.3 - step * 0.02, 1.5 - step * 0.1, 6e-4, 812.5 + step, 5042 + step
        t.out(fmt, step + 1, 8, loss, norm, lr, ms, -100.0, tok)
        for values in held:
            t.metrics(step, **values)
        held = []
        t.metrics(
            step,
            train_loss=_printed("%7.6f", loss),
            grad_norm=_printed("%6.4f", norm),
            lr=_printed("%.2e", lr),
            step_time_ms=_printed("%.2f", ms),
            tok_per_sec=_printed("%.0f", tok),
        )
    return t


# --- nanoGPT ------------------------------------------------------------------------------------------------

_SHAKESPEARE_CHAR = """# train a miniature character-level shakespeare model
# good for debugging and playing on macbooks and such

out_dir = 'out-shakespeare-char'
eval_interval = 250 # keep frequent because we'll overfit
eval_iters = 200
log_interval = 10 # don't print too too often

# we expect to overfit on this small dataset, so only save when val improves
always_save_checkpoint = False

wandb_log = False # override via command line if you like
wandb_project = 'shakespeare-char'
wandb_run_name = 'mini-gpt'

dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 64
block_size = 256 # context of up to 256 previous characters

# baby GPT model :)
n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2

learning_rate = 1e-3 # with baby networks can afford to go a bit higher
max_iters = 5000
lr_decay_iters = 5000 # make equal to max_iters usually
min_lr = 1e-4 # learning_rate / 10 usually
beta2 = 0.99 # make a bit bigger because number of tokens per iter is small

warmup_iters = 100 # not super necessary potentially

# on macbook also add
# device = 'cpu'  # run on cpu only
# compile = False # do not torch compile the model
"""
_SHAKESPEARE_CONFIG = {
    "out_dir": "out-shakespeare-char",
    "eval_interval": 250,
    "eval_iters": 200,
    "log_interval": 10,
    "always_save_checkpoint": False,
    "wandb_log": False,
    "wandb_project": "shakespeare-char",
    "wandb_run_name": "mini-gpt",
    "dataset": "shakespeare_char",
    "gradient_accumulation_steps": 1,
    "batch_size": 64,
    "block_size": 256,
    "n_layer": 6,
    "n_head": 6,
    "n_embd": 384,
    "dropout": 0.2,
    "learning_rate": 1e-3,
    "max_iters": 5000,
    "lr_decay_iters": 5000,
    "min_lr": 1e-4,
    "beta2": 0.99,
    "warmup_iters": 100,
}


def nanogpt() -> Transcript:
    """`python train.py config/train_shakespeare_char.py --max_iters=20 --eval_interval=10 ...`."""
    t = Transcript("nanogpt", "nanogpt")
    t.out("Overriding config with %s:\n", "config/train_shakespeare_char.py")
    t.out("%s\n", _SHAKESPEARE_CHAR)  # print(config_content)
    for key, value in _SHAKESPEARE_CONFIG.items():
        t.config(key, value)
    for key, value in [("max_iters", 20), ("eval_interval", 10), ("log_interval", 5), ("compile", False)]:
        t.out("Overriding: %s = %s\n", key, value)
        t.config(key, value)
    t.out("tokens per iteration will be: %s\n", f"{16384:,}")
    t.config("tokens_per_iter", 16384)
    t.out("found vocab_size = %s (inside %s)\n", 65, "data/shakespeare_char/meta.pkl")
    t.config("vocab_size", 65)
    t.out("Initializing a new model from scratch\n")
    t.out("number of parameters: %.2fM\n", 10.65)
    t.out("num decayed parameter tensors: %d, with %s parameters\n", 26, f"{10740096:,}")
    t.out("using fused AdamW: %s\n", True)
    running_mfu = -1.0
    for iter_num in range(21):
        if iter_num % 10 == 0:
            train, val = 4.2874 - iter_num * 0.05, 4.2823 - iter_num * 0.04
            t.out("step %s: train loss %s, val loss %s\n", iter_num, f"{train:.4f}", f"{val:.4f}")
            t.metrics(iter_num, eval_train_loss=_printed("%.4f", train), val_loss=_printed("%.4f", val))
        if iter_num % 5 == 0:
            lossf, dt = 4.2639 - iter_num * 0.06, 0.04596 + iter_num / 10000
            if iter_num >= 5:
                running_mfu = 0.0811 + iter_num / 1000
            t.out(
                "iter %s: loss %s, time %sms, mfu %s%%\n",
                iter_num,
                f"{lossf:.4f}",
                f"{dt * 1000:.2f}",
                f"{running_mfu * 100:.2f}",
            )
            values = {"train_loss": _printed("%.4f", lossf), "step_time_ms": _printed("%.2f", dt * 1000)}
            if running_mfu >= 0:
                values["mfu_pct"] = _printed("%.2f", running_mfu * 100)
            t.metrics(iter_num, **values)
    return t


# --- generic and JSON lines ---------------------------------------------------------------------------------


def generic() -> Transcript:
    """key=value and key: value lines of several shapes, a Python dict print, a progress bar, JSON."""
    t = Transcript("generic", "generic")
    t.out("Loading dataset from /data/train.bin ... done\n")
    t.out("epoch: 1, step: 100, loss: 2.345, lr: 3e-4, time: 12.5ms\n")
    t.metrics(100, epoch=1.0, loss=2.345, lr=3e-4, time=12.5)
    t.out("step=200 loss=2.10 acc=95%% grad_norm=nan\n")
    t.metrics(200, loss=2.10, acc=95.0, grad_norm=NAN)
    t.out("eval | val_loss: 2.5 | val_ppl: inf | split: valid\n")
    t.metrics(200, val_loss=2.5, val_ppl=math.inf)
    t.out("{'loss': 1.9, 'learning_rate': 5e-05, 'epoch': 0.5}\n")
    t.metrics(200, loss=1.9, learning_rate=5e-05, epoch=0.5)
    t.out(
        "train  40%%|####      | 4/10 [00:01<00:02, loss=9.9]\rtrain 100%%|##########| 10/10 [00:03<00:00, loss=1.5]\n"
    )
    t.metrics(200, loss=1.5)  # only the bar's last drawing was left on screen
    t.out('{"step": 300, "loss": 1.7, "eval": {"acc": 0.91}, "tag": "best"}\n')
    t.metrics(300, loss=1.7, **{"eval/acc": 0.91})
    t.out("level: info, count: 3, url: http://localhost:8080/x, when: 2024-01-01 12:30:01\n")
    t.metrics(300, count=3.0)
    t.out("Step 400/1000 | loss: 1.6 | tokens/s: 5120.5\n")
    t.metrics(400, loss=1.6, **{"tokens/s": 5120.5})
    return t


def jsonl() -> Transcript:
    """One JSON object per line; a few lines that are not objects."""
    t = Transcript("jsonl", "jsonl")
    t.out('{"step": 0, "loss": 2.5, "lr": 0.001, "name": "run-a", "ok": true}\n')
    t.metrics(0, loss=2.5, lr=0.001)
    t.out("starting epoch 1\n")
    t.out('{"iter": 1, "loss": NaN, "grad": {"norm": 1.5, "max": Infinity}}\n')
    t.metrics(1, loss=NAN, **{"grad/norm": 1.5, "grad/max": math.inf})
    t.out('{"loss": 2.0, "tokens": 4096}\n')
    t.metrics(1, loss=2.0, tokens=4096.0)
    t.out("[1, 2, 3]\n")
    t.out('{"iteration": 2.0, "loss": -Infinity}\n')
    t.metrics(2, loss=-math.inf)
    t.out('  {"step": 3, "val": {"loss": 1.25}}\n')
    t.metrics(3, **{"val/loss": 1.25})
    return t


BUILDERS: list[Callable[[], Transcript]] = [gpt2_cuda, llmc_cpu, llmc_cuda, llmc_cuda_mid, nanogpt, generic, jsonl]


def write_all() -> None:
    for build in BUILDERS:
        transcript = build()
        (HERE / f"{transcript.name}.txt").write_text(transcript.text, encoding="utf-8", newline="")
        expected = json.dumps(transcript.expected_json(), indent=1)
        (HERE / f"{transcript.name}.expected.json").write_text(expected + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_all()
