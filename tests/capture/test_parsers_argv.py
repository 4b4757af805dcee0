"""The child's command-line flags as config."""

from __future__ import annotations

import pytest

from expertrack.capture.parsers import parse_argv_config


def test_the_issues_example() -> None:
    assert parse_argv_config(["./train", "-b", "4703", "--lr=3e-4", "--flag"]) == {
        "b": 4703,
        "lr": 0.0003,
        "flag": True,
    }


def test_the_seeds_command_line() -> None:
    argv = [
        "./train",
        "-e",
        "model_grok.bin",
        "-i",
        "data/modular/train.bin",
        "-j",
        "data/modular/val.bin",
        "-x",
        "data/modular/test.bin",
        "-t",
        "8",
        "-b",
        "4703",
        "-n",
        "5000",
        "-v",
        "500",
        "-s",
        "0",
        "-l",
        "0.001",
        "-w",
        "1.0",
        "-a",
        "0.98",
        "-q",
        "1337",
    ]
    assert parse_argv_config(argv) == {
        "e": "model_grok.bin",
        "i": "data/modular/train.bin",
        "j": "data/modular/val.bin",
        "x": "data/modular/test.bin",
        "t": 8,
        "b": 4703,
        "n": 5000,
        "v": 500,
        "s": 0,
        "l": 0.001,
        "w": 1.0,
        "a": 0.98,
        "q": 1337,
    }
    assert isinstance(parse_argv_config(["./train", "-w", "1.0"])["w"], float)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["./train", "-x", "-1", "-sl", "-2.5e-1"], {"x": -1, "sl": -0.25}),
        (["./train", "--a", "--b", "-c"], {"a": True, "b": True, "c": True}),
        (["./train", "data.bin", "--lr", "3e-4", "out/"], {"lr": 0.0003}),
        (["./train", "--name=", "--mode=a=b"], {"name": "", "mode": "a=b"}),
        (["./train", "-b", "1", "-b", "2"], {"b": 2}),
        (["./train", "--lr", "1", "--", "--not-a-flag", "x"], {"lr": 1}),
        (["./train", "--compile=False", "--wandb_log=true"], {"compile": False, "wandb_log": True}),
        (
            ["./train", "--x", "nan", "--y", "inf", "--z", "0x10", "--w", "1_000"],
            {"x": "nan", "y": "inf", "z": "0x10", "w": "1_000"},
        ),
        (["./train", "-", "--read", "-", "--write"], {"read": "-", "write": True}),
        (["./train", "---", "--=3"], {}),
        (["./train"], {}),
        ([], {}),
    ],
)
def test_flags(argv: list[str], expected: dict[str, object]) -> None:
    assert parse_argv_config(argv) == expected


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["python", "-u", "train.py", "--lr", "3e-4"], {"lr": 0.0003}),
        (["/usr/bin/python3.11", "-W", "ignore", "-X", "dev", "train.py", "--bs=8"], {"bs": 8}),
        (
            ["python3", "-m", "torch.distributed.run", "--nproc_per_node=8", "train.py", "--lr=1"],
            {"nproc_per_node": 8, "lr": 1},
        ),
        (["python", "-c", "print(1)", "--x", "1"], {"x": 1}),
        (["python", "train.py", "config/train_shakespeare_char.py", "--max_iters=20"], {"max_iters": 20}),
        (["python"], {}),
        (["pythonista", "-u", "x"], {"u": "x"}),
    ],
)
def test_python_interpreters_own_options_are_skipped(argv: list[str], expected: dict[str, object]) -> None:
    assert parse_argv_config(argv) == expected
