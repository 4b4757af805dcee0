"""Every Python block in README.md and docs/*.md runs, so no documented example can rot (issue 18, item 1).

A page's blocks run in order in one fresh interpreter, as a reader would type them, in an empty directory where
runs go to the default ``./expertrack-runs``. A block that uses names the page leaves to the reader (a training
step, a model, a run id) is preceded in the Markdown by ``<!-- example: setup=NAME -->``, and the setup NAME below
defines them first, as small as it can. A block that cannot run here says why: ``<!-- example: not run: REASON -->``
(the reason is required and shown in the test's listing).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_BLOCK = re.compile(r"(?:^<!-- example: (?P<directive>.*?) -->\n)?^```python\n(?P<code>.*?)^```", re.M | re.S)

SETUPS = {
    # The README's training loop: any numbers will do.
    "training": """
import random
def train_step() -> float:
    return random.random()
def evaluate() -> float:
    return random.random()
""",
    # A loop's batches and its loss (docs/integrations.md, Accelerate).
    "training-batches": """
import torch
loader = [torch.randn(4, 8) for _ in range(3)]
loss = torch.tensor(2.5)
""",
    # The rules file docs/alerts.md names.
    "alerts-file": """
from pathlib import Path
Path("alerts.toml").write_text("[spike]\\nfactor = 5\\n\\n[stall]\\nminutes = 30\\n")
""",
    # A run in the default store, and its id.
    "stored-run": """
import expertrack
with expertrack.init(project="moe", name="stored") as _run:
    for _ in range(3):
        _run.log({"train/loss": 2.0})
run_id = _run.id
""",
    # The demo's runs, as the figures read them: the synthetic runs of the figures' tests, in project "demo".
    "demo-runs": """
from tests.figures.synthetic import BASE, log_run
for _variant in BASE:
    for _seed in (0, 1):
        log_run("expertrack-runs", _variant, _seed, project="demo")
""",
    # An MoE model with a loss, batches tagged with their domain, an optimizer and a run.
    "moe-training": """
import expertrack, torch
from types import SimpleNamespace
from tests.moe.helpers import TinyMoE
class _LM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = TinyMoE(vocab=32, num_experts=4, top_k=2)
    def forward(self, ids):
        logits = self.net(ids[:, :-1])
        return SimpleNamespace(loss=torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten()))
model = _LM()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
loader = [
    SimpleNamespace(ids=torch.randint(0, 32, (3, 9)), domain=torch.tensor([0, 1, 2]),
                    attention_mask=torch.ones(3, 8, dtype=torch.bool))
    for _ in range(20)
]
run = expertrack.init(project="moe", name="watched")
""",
}


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    code: str
    setup: str | None = None
    not_run: str | None = None


def blocks(page: Path) -> list[Block]:
    """The page's Python blocks with their directives; a malformed directive fails the test that reads it."""
    text = page.read_text()
    found = []
    for match in _BLOCK.finditer(text):
        line = text.count("\n", 0, match.start("code"))
        directive = (match["directive"] or "").strip()
        if not directive:
            found.append(Block(line, match["code"]))
        elif directive.startswith("setup="):
            name = directive.removeprefix("setup=")
            assert name in SETUPS, f"{page.name}:{line}: unknown setup {name!r} (known: {sorted(SETUPS)})"
            found.append(Block(line, match["code"], setup=name))
        elif directive.startswith("not run:") and directive.removeprefix("not run:").strip():
            found.append(Block(line, match["code"], not_run=directive.removeprefix("not run:").strip()))
        else:
            raise AssertionError(f"{page.name}:{line}: {directive!r} is neither setup=NAME nor 'not run: WHY'")
    return found


def page_script(page: Path) -> str:
    """One script of the page's runnable blocks, each after its setup, marked with where it comes from."""
    parts = []
    for block in blocks(page):
        if block.not_run:
            continue
        if block.setup:
            parts.append(f"# --- setup {block.setup}\n{SETUPS[block.setup]}")
        parts.append(f"# --- {page.name}, block at line {block.line}\n{block.code}")
    return "\n".join(parts)


def test_the_docs_have_examples_and_every_skipped_one_says_why() -> None:
    every = {page.name: blocks(page) for page in PAGES}
    assert sum(len(found) for found in every.values()) >= 8  # the extraction itself still finds them
    assert all(b.not_run for found in every.values() for b in found if b.not_run is not None)


@pytest.mark.parametrize("page", [p for p in PAGES if any(not b.not_run for b in blocks(p))], ids=lambda p: p.name)
def test_every_python_block_of_the_page_runs(page: Path, tmp_path: Path) -> None:
    script = tmp_path / f"{page.stem}_examples.py"
    script.write_text(page_script(page))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("EXPERTRACK_", "WANDB_"))}
    env.update(PYTHONPATH=str(REPO), EXPERTRACK_MIRROR="off", MPLBACKEND="Agg")  # no W&B, as a new user
    work = tmp_path / "reader"
    work.mkdir()
    proc = subprocess.run([sys.executable, str(script)], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{page.name}'s examples failed ({script}):\n{proc.stderr[-4000:]}"
    # an example that loses data says so on stderr ("refused", "skipped"): the README's own once did
    assert "refused" not in proc.stderr and "skipped" not in proc.stderr, proc.stderr[-4000:]
