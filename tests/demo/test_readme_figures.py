"""The README's figures can be made again by the commands it gives (issue 18, item 4): those commands, read from
README.md, run here with a tiny budget added, and give the five figures from two seeds per variant."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

BIN = Path(sys.executable).parent


def readme_figure_commands() -> list[list[str]]:
    """The bash block under "To make them again" in README.md, one argv per line."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("To make them again") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README.md: no bash block after 'To make them again'"
    return [shlex.split(line) for line in block[1].strip().splitlines()]


def test_the_readme_figure_commands_make_the_five_figures_from_two_seeds(tmp_path: Path) -> None:
    demo, figures = readme_figure_commands()
    assert demo[:2] == ["bash", "scripts/demo.sh"] and "--seeds" in demo and demo[demo.index("--seeds") + 1] == "2"
    assert figures[0] == ".venv/bin/expertrack" and figures[1] == "figures"
    # scripts/demo.sh is `.venv/bin/expertrack demo "$@"` after setting up .venv, which this test already runs in
    tiny = ["--quick", "--steps", "6", "--threads", "1"]
    steps = [[str(BIN / "expertrack"), "demo", *demo[2:], *tiny], [str(BIN / "expertrack"), *figures[1:]]]
    out = Path(figures[figures.index("--out") + 1])
    for argv in steps:
        proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{argv}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    made = sorted(p.name for p in (tmp_path / out).glob("*.png"))
    assert made == sorted(p.name for p in (REPO / "docs" / "figures").glob("*.png"))  # the README's five
    sources = (tmp_path / out / "ablation_lb.json").read_text()
    assert "moe-no-lb-s0" in sources and "moe-no-lb-s1" in sources  # both seeds are in the bars
