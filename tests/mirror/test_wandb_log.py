"""The .wandb reader against real files written by W&B's offline mode, and against damaged copies."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import pytest

from expertrack.mirror import wandb_log
from expertrack.mirror.wandb_log import WandbLogError, iter_payloads, iter_records, read_run

from .wandb_offline import run_wandb_script, wandb_logs

pytest.importorskip("wandb")

SCRIPT = """
import math, wandb
run = wandb.init(project="proj-a", name="run-name", group="grp", tags=["moe", "seed1"], notes="a note",
                 id="reader01", config={"lr": 3e-4, "model": {"layers": 4}, "big": "x" * 70000})
run.define_metric("val/*", step_metric="epoch", summary="min")
for s in range(1500):
    run.log({"train/loss": 1.0 / (s + 1), "lr": 3e-4 * s, "flag": s % 2 == 0}, step=s)
run.log({"val/loss": float("nan"), "epoch": 1, "deep": {"a": {"b": 2.5}}}, step=1500)
run.summary["best"] = 0.125
run.finish(exit_code=3)
"""


@pytest.fixture(scope="module")
def wandb_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wandb_dir = tmp_path_factory.mktemp("wandb")
    run_wandb_script(SCRIPT, wandb_dir)
    (log,) = wandb_logs(wandb_dir)
    return log


def test_file_header_and_chunks_follow_the_documented_layout(wandb_file: Path) -> None:
    data = wandb_file.read_bytes()
    assert data[:4] == b":W&B"
    assert struct.unpack_from("<HB", data, 4) == (0xBEE1, 0)
    crc, length, rtype = struct.unpack_from("<IHB", data, 7)
    assert rtype == wandb_log.FULL
    # The checksum is plain CRC-32 over the type byte then the data (not LevelDB's masked CRC-32C).
    assert crc == zlib.crc32(bytes([rtype]) + data[14 : 14 + length])
    assert len(data) > 3 * wandb_log.BLOCK_LEN  # the reader crossed several block boundaries


def test_every_record_decodes_strictly(wandb_file: Path) -> None:
    kinds = [r.WhichOneof("record_type") for r in iter_records(wandb_file, strict=True)]
    assert kinds[0] == "header"
    assert kinds.count("run") == 1
    assert kinds.count("history") == 1501
    assert "exit" in kinds


def test_a_record_larger_than_a_block_is_reassembled(wandb_file: Path) -> None:
    sizes = [len(p) for p in iter_payloads(wandb_file, strict=True)]
    assert max(sizes) > wandb_log.BLOCK_LEN  # the 70 kB config value spans three blocks
    assert read_run(wandb_file).config["big"] == "x" * 70000


def test_run_metadata_config_summary(wandb_file: Path) -> None:
    run = read_run(wandb_file, strict=True)
    assert (run.run_id, run.project, run.name, run.group) == ("reader01", "proj-a", "run-name", "grp")
    assert run.tags == ["moe", "seed1"]
    assert run.notes == "a note"
    assert run.config == {"lr": 3e-4, "model": {"layers": 4}, "big": "x" * 70000}
    assert run.summary["best"] == 0.125
    assert run.summary["train/loss"] == pytest.approx(1 / 1500)
    assert run.exit_code == 3
    assert run.wandb_version.startswith("0.")
    assert run.telemetry is not None and run.telemetry.python_version
    (metric,) = run.metrics
    assert (metric.glob_name, metric.step_metric, metric.summary) == ("val/*", "epoch", ["min"])


def test_history_rows_by_step(wandb_file: Path) -> None:
    run = read_run(wandb_file, strict=True)
    steps = [row["_step"] for row in run.history]
    assert steps == list(range(1501))
    for s in (0, 1, 777, 1499):
        row = run.history[s]
        assert row["train/loss"] == pytest.approx(1.0 / (s + 1), rel=1e-15)
        assert row["lr"] == pytest.approx(3e-4 * s, rel=1e-15)
        assert row["flag"] is (s % 2 == 0)
    last = run.history[-1]
    assert math.isnan(last["val/loss"])
    assert last["deep/a/b"] == 2.5  # nested dicts come back flattened with "/"
    assert run.keys() == ["deep/a/b", "epoch", "flag", "lr", "train/loss", "val/loss"]


def test_truncated_tail_keeps_the_complete_records(wandb_file: Path, tmp_path: Path) -> None:
    data = wandb_file.read_bytes()
    cut = tmp_path / "cut.wandb"
    cut.write_bytes(data[: len(data) * 2 // 3 + 5])  # cut inside a record
    run = read_run(cut, strict=True)
    steps = [row["_step"] for row in run.history]
    assert 100 < len(steps) < 1501
    assert steps == list(range(len(steps)))


def test_damaged_record_is_skipped_or_raises_when_strict(wandb_file: Path, tmp_path: Path) -> None:
    data = bytearray(wandb_file.read_bytes())
    data[wandb_log.BLOCK_LEN + 2000] ^= 0xFF  # flip a byte in the second block
    bad = tmp_path / "bad.wandb"
    bad.write_bytes(bytes(data))
    with pytest.raises(WandbLogError, match="checksum"):
        list(iter_payloads(bad, strict=True))
    warnings: list[str] = []
    good = sum(1 for _ in iter_payloads(wandb_file))
    kept = sum(1 for _ in iter_payloads(bad, warnings=warnings))
    assert warnings and "checksum" in warnings[0]
    assert 0 < kept < good  # only part of one block was lost


def test_not_a_wandb_file(tmp_path: Path) -> None:
    other = tmp_path / "x.wandb"
    other.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    with pytest.raises(WandbLogError, match=r"not a \.wandb file"):
        list(iter_payloads(other))


def _synthetic_log(payloads: list[bytes]) -> bytes:
    """A log written by this test's own minimal writer, to reach edge cases W&B rarely produces."""
    out = bytearray(struct.pack("<4sHB", b":W&B", 0xBEE1, 0))
    for payload in payloads:
        rest = payload
        first = True
        while True:
            left = wandb_log.BLOCK_LEN - len(out) % wandb_log.BLOCK_LEN
            if left < 7:
                out += b"\x00" * left
                continue
            chunk, rest = rest[: left - 7], rest[left - 7 :]
            last = not rest
            rtype = (
                (wandb_log.FULL if last else wandb_log.FIRST)
                if first
                else (wandb_log.LAST if last else wandb_log.MIDDLE)
            )
            crc = zlib.crc32(bytes([rtype]) + chunk)
            out += struct.pack("<IHB", crc, len(chunk), rtype) + chunk
            first = False
            if last:
                break
    return bytes(out)


@pytest.mark.parametrize("left", [0, 1, 6, 7, 8, 20])
def test_block_boundaries_padding_and_empty_first_chunks(tmp_path: Path, left: int) -> None:
    # The first payload leaves `left` bytes in block one: under 7 is zero padding, exactly 7 an empty FIRST.
    first = b"a" * (wandb_log.BLOCK_LEN - 7 - 7 - left)
    payloads = [first, b"b" * 100_000, b"", b"c" * 10]
    path = tmp_path / "s.wandb"
    path.write_bytes(_synthetic_log(payloads))
    assert list(iter_payloads(path, strict=True)) == payloads
