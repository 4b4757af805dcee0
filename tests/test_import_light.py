"""``import expertrack`` stays light: no torch, matplotlib, wandb or web framework (DESIGN.md rule 4)."""

from __future__ import annotations

from tests.conftest import run_python

HEAVY = ["torch", "matplotlib", "wandb", "starlette", "uvicorn", "plotly", "transformers", "pandas", "pyarrow", "modal"]


def test_import_loads_no_heavy_module() -> None:
    code = f"import sys, expertrack\nheavy = [m for m in {HEAVY!r} if m in sys.modules]\nprint(','.join(heavy))\n"
    assert run_python(code).stdout.strip() == ""


def test_logging_a_run_loads_no_heavy_module(tmp_path) -> None:
    code = (
        "import sys, expertrack\n"
        f"run = expertrack.init(project='light', dir={str(tmp_path)!r})\n"
        "run.log({'loss': 1.0})\n"
        "run.finish()\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    assert run_python(code).stdout.strip() == ""


def test_dir_of_moe_lists_its_lazy_names_without_loading_torch() -> None:
    code = "import sys, expertrack.moe\nprint(' '.join(dir(expertrack.moe)))\nprint('torch' in sys.modules)\n"
    names, torch_loaded = run_python(code).stdout.splitlines()
    assert {"watch", "RouterStats", "load_balancing_loss", "maxvio"} <= set(names.split())  # tab completion sees them
    assert torch_loaded == "False"
