"""A reader for W&B's ``.wandb`` transaction log (the file ``run-<id>.wandb`` of a run directory).

Recent wandb releases no longer ship a Python reader for it, so this is a small one of our own.

The container is a LevelDB-style log:

* a 7-byte file header: ``b":W&B"``, a magic ``uint16`` 0xBEE1 (little-endian, bytes ``e1 be``) and a
  version byte (0);
* then 32 KiB blocks (the file header counts as the first 7 bytes of the first block). Each block holds
  records, each with a 7-byte header: ``crc32`` (``uint32`` LE, plain zlib CRC-32 of the type byte followed
  by the data, not masked), ``length`` (``uint16`` LE) and ``type`` (FULL=1, FIRST=2, MIDDLE=3, LAST=4),
  then ``length`` bytes of data. A record never starts in the last 6 bytes of a block: those are zero
  padding. A payload larger than the rest of a block is split into FIRST, MIDDLE..., LAST chunks.

Each reassembled payload is one serialized ``wandb.proto.wandb_internal_pb2.Record``.

:func:`iter_payloads` needs only the standard library; :func:`iter_records` and :func:`read_run` import
wandb's protobuf classes (the ``wandb`` extra).
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILE_IDENT = b":W&B"
FILE_MAGIC = 0xBEE1
FILE_VERSION = 0
FILE_HEADER = struct.Struct("<4sHB")  # 7 bytes
RECORD_HEADER = struct.Struct("<IHB")  # 7 bytes
BLOCK_LEN = 32768
HEADER_LEN = 7

FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class WandbLogError(ValueError):
    """The file is not a .wandb log, or (in strict mode) a record is damaged."""


def _crc(rtype: int, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(bytes([rtype]))) & 0xFFFFFFFF


def iter_payloads(path: str | Path, *, strict: bool = False, warnings: list[str] | None = None) -> Iterator[bytes]:
    """Yield the raw payload (one serialized Record) of each logical record, in file order.

    A truncated tail (a run still writing, or killed) ends the iteration quietly. A damaged record (bad
    checksum, impossible length, chunk out of order) raises :class:`WandbLogError` when ``strict``;
    otherwise the rest of its block is skipped, as LevelDB's reader does, and a line is appended to
    ``warnings`` when given.
    """
    data = Path(path).read_bytes()
    if len(data) < HEADER_LEN:
        raise WandbLogError(f"{path}: too short for a .wandb file ({len(data)} bytes)")
    ident, magic, version = FILE_HEADER.unpack_from(data, 0)
    if ident != FILE_IDENT or magic != FILE_MAGIC:
        raise WandbLogError(f"{path}: not a .wandb file (header {data[:HEADER_LEN]!r})")
    if version != FILE_VERSION:
        raise WandbLogError(f"{path}: unsupported .wandb log version {version}")

    def damaged(msg: str) -> None:
        if strict:
            raise WandbLogError(f"{path}: {msg}")
        if warnings is not None:
            warnings.append(msg)

    pos = HEADER_LEN
    size = len(data)
    pending: list[bytes] | None = None  # chunks of a FIRST..LAST record in progress
    while pos < size:
        left_in_block = BLOCK_LEN - pos % BLOCK_LEN
        if left_in_block < HEADER_LEN:  # trailer: zero padding up to the next block
            pos += left_in_block
            continue
        if pos + HEADER_LEN > size:
            break  # truncated header at the tail
        crc, length, rtype = RECORD_HEADER.unpack_from(data, pos)
        if crc == 0 and length == 0 and rtype == 0:
            # Zero bytes where a record should start: preallocated or padded space. Skip the block's rest.
            pos += left_in_block
            continue
        start = pos + HEADER_LEN
        end = start + length
        if length > left_in_block - HEADER_LEN:
            damaged(f"record at offset {pos} overruns its block (length {length})")
            pending = None
            pos += left_in_block
            continue
        if end > size:
            break  # truncated record at the tail
        chunk = data[start:end]
        if _crc(rtype, chunk) != crc:
            damaged(f"checksum mismatch in record at offset {pos}")
            pending = None
            pos += left_in_block
            continue
        pos = end
        if rtype == FULL:
            if pending is not None:
                damaged(f"FULL record at offset {pos} inside a split record")
            pending = None
            yield chunk
        elif rtype == FIRST:
            if pending is not None:
                damaged(f"FIRST record at offset {pos} inside a split record")
            pending = [chunk]
        elif rtype == MIDDLE:
            if pending is None:
                damaged(f"MIDDLE record at offset {pos} without a FIRST")
            else:
                pending.append(chunk)
        elif rtype == LAST:
            if pending is None:
                damaged(f"LAST record at offset {pos} without a FIRST")
            else:
                pending.append(chunk)
                yield b"".join(pending)
                pending = None
        else:
            damaged(f"unknown record type {rtype} at offset {pos}")


def iter_records(path: str | Path, *, strict: bool = False, warnings: list[str] | None = None) -> Iterator[Any]:
    """Yield each record of the log decoded as ``wandb_internal_pb2.Record``.

    Payloads that do not parse are skipped (or raise, when ``strict``).
    """
    from google.protobuf.message import DecodeError
    from wandb.proto import wandb_internal_pb2

    for payload in iter_payloads(path, strict=strict, warnings=warnings):
        record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]
        try:
            record.ParseFromString(payload)
        except DecodeError as exc:
            if strict:
                raise WandbLogError(f"{path}: undecodable record: {exc}") from exc
            if warnings is not None:
                warnings.append(f"undecodable record: {exc}")
            continue
        yield record


# ---------------------------------------------------------------------------------------------------------
# A run, rebuilt from its records


@dataclass
class WandbMetric:
    """One define_metric setting, as recorded."""

    name: str = ""
    glob_name: str = ""
    step_metric: str = ""
    summary: list[str] = field(default_factory=list)
    goal: str | None = None  # "minimize" / "maximize"
    hidden: bool = False
    step_sync: bool = False


@dataclass
class WandbRun:
    """What a .wandb log says about its run."""

    path: Path
    run_id: str = ""
    entity: str = ""
    project: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    notes: str = ""
    tags: list[str] = field(default_factory=list)
    host: str = ""
    start_time: float | None = None
    starting_step: int = 0
    resumed: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # each row: "_step" plus the logged keys
    metrics: list[WandbMetric] = field(default_factory=list)
    telemetry: Any = None  # the last TelemetryRecord, as a protobuf message
    exit_code: int | None = None
    runtime: int | None = None
    wandb_version: str = ""
    output: list[tuple[str, str]] = field(default_factory=list)  # ("stdout"/"stderr", text)
    files: list[str] = field(default_factory=list)
    record_counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def keys(self) -> list[str]:
        """Every history key except the ones starting with ``_``, sorted."""
        out: set[str] = set()
        for row in self.history:
            out.update(k for k in row if not k.startswith("_"))
        return sorted(out)


def _item_key(item: Any) -> list[str]:
    if item.nested_key:
        return list(item.nested_key)
    return [item.key]


def _set_nested(target: dict[str, Any], keys: list[str], value: Any) -> None:
    for k in keys[:-1]:
        nxt = target.get(k)
        if not isinstance(nxt, dict):
            nxt = {}
            target[k] = nxt
        target = nxt
    target[keys[-1]] = value


def _del_nested(target: dict[str, Any], keys: list[str]) -> None:
    for k in keys[:-1]:
        nxt = target.get(k)
        if not isinstance(nxt, dict):
            return
        target = nxt
    target.pop(keys[-1], None)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return text


def _history_value(item: Any) -> Any:
    # wandb-core writes every value as value_json (NaN and Infinity included, which json.loads accepts).
    return _json(item.value_json) if item.value_json else None


def _flatten_row(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested history keys with ``/``; a dict with ``_type`` (media, histogram) stays one value."""
    out: dict[str, Any] = {}
    for k, v in nested.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and "_type" not in v:
            out.update(_flatten_row(v, key + "/"))
        else:
            out[key] = v
    return out


def _unwrap_config(raw: dict[str, Any]) -> dict[str, Any]:
    """W&B stores each config key as ``{"value": v, "desc": ...}``; ``_wandb`` is its own bookkeeping."""
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if k == "_wandb":
            continue
        out[k] = v["value"] if isinstance(v, dict) and "value" in v else v
    return out


def read_run(path: str | Path, *, strict: bool = False) -> WandbRun:
    """Read a whole .wandb file into a :class:`WandbRun`.

    History rows are merged by step (wandb may write several partial records for one step) and returned in
    file order of their first appearance; config and summary are the result of applying every update and
    removal in order; ``config`` is unwrapped from W&B's ``{"value": ...}`` form.
    """
    path = Path(path)
    run = WandbRun(path=path)
    raw_config: dict[str, Any] = {}
    rows: dict[int, dict[str, Any]] = {}
    unstepped: list[dict[str, Any]] = []
    order: list[int] = []
    for rec in iter_records(path, strict=strict, warnings=run.warnings):
        kind = rec.WhichOneof("record_type") or "none"
        run.record_counts[kind] = run.record_counts.get(kind, 0) + 1
        if kind == "run":
            r = rec.run
            run.run_id = r.run_id or run.run_id
            run.entity = r.entity or run.entity
            run.project = r.project or run.project
            run.name = r.display_name or run.name
            run.group = r.run_group or run.group
            run.job_type = r.job_type or run.job_type
            run.notes = r.notes or run.notes
            if r.tags:
                run.tags = list(r.tags)
            run.host = r.host or run.host
            run.starting_step = r.starting_step
            run.resumed = r.resumed
            if r.HasField("start_time"):
                run.start_time = r.start_time.seconds + r.start_time.nanos / 1e9
            for item in r.config.update:
                _set_nested(raw_config, _item_key(item), _json(item.value_json))
            for item in r.summary.update:
                _set_nested(run.summary, _item_key(item), _json(item.value_json))
            if r.HasField("telemetry"):
                run.telemetry = r.telemetry
        elif kind == "config":
            for item in rec.config.update:
                _set_nested(raw_config, _item_key(item), _json(item.value_json))
            for item in rec.config.remove:
                _del_nested(raw_config, _item_key(item))
        elif kind == "summary":
            for item in rec.summary.update:
                _set_nested(run.summary, _item_key(item), _json(item.value_json))
            for item in rec.summary.remove:
                _del_nested(run.summary, _item_key(item))
        elif kind == "history":
            h = rec.history
            nested: dict[str, Any] = {}
            for item in h.item:
                _set_nested(nested, _item_key(item), _history_value(item))
            row = _flatten_row(nested)
            if h.HasField("step"):
                step = int(h.step.num)
            elif "_step" in row and isinstance(row["_step"], (int, float)):
                step = int(row["_step"])
            else:
                unstepped.append(row)
                continue
            row["_step"] = step
            if step in rows:
                rows[step].update(row)
            else:
                rows[step] = row
                order.append(step)
        elif kind == "metric":
            m = rec.metric
            summ = [n for n in ("min", "max", "mean", "best", "last", "none", "copy", "first") if getattr(m.summary, n)]
            goal = {1: "minimize", 2: "maximize"}.get(int(m.goal))
            metric = WandbMetric(
                name=m.name,
                glob_name=m.glob_name,
                step_metric=m.step_metric,
                summary=summ,
                goal=goal,
                hidden=m.options.hidden,
                step_sync=m.options.step_sync,
            )
            run.metrics.append(metric)
        elif kind == "telemetry":
            run.telemetry = rec.telemetry
        elif kind == "exit":
            run.exit_code = rec.exit.exit_code
            run.runtime = rec.exit.runtime
        elif kind == "header":
            run.wandb_version = rec.header.version_info.producer or run.wandb_version
        elif kind == "output":
            stream = "stderr" if rec.output.output_type == 0 else "stdout"
            run.output.append((stream, rec.output.line))
        elif kind == "output_raw":
            stream = "stderr" if rec.output_raw.output_type == 0 else "stdout"
            run.output.append((stream, rec.output_raw.line))
        elif kind == "files":
            run.files.extend(f.path for f in rec.files.files)
    run.config = _unwrap_config(raw_config)
    run.history = [rows[s] for s in order] + unstepped
    return run
