"""The logging API in-process: steps, values, config, summary, define_metric, resume, threads."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest

import expertrack


def read(run: expertrack.Run) -> expertrack.ApiRun:
    return expertrack.Api(run.dir).run(run.id)


def test_log_before_init_is_a_clear_error() -> None:
    with pytest.raises(expertrack.NoRunError, match=r"expertrack.log\(\) was called before expertrack.init\(\)"):
        expertrack.log({"loss": 1.0})
    with pytest.raises(expertrack.NoRunError):
        expertrack.config["lr"] = 1


def test_steps_follow_wandb_semantics() -> None:
    run = expertrack.init(project="steps")
    run.log({"a": 1.0})  # step 0
    run.log({"a": 2.0})  # step 1
    run.log({"b": 5.0}, step=7)  # opens step 7
    run.log({"c": 6.0}, step=7)  # same row
    run.log({"d": 8.0}, commit=False)  # still step 7
    run.log({"e": 9.0})  # commits step 7
    assert run.step == 8
    run.log({"a": 3.0})  # step 8
    run.finish()
    stored = read(run)
    assert stored.scalars("a")[0].tolist() == [0, 1, 8]
    for key in "bcde":
        assert stored.scalars(key)[0].tolist() == [7]


def test_lower_step_is_refused_with_one_warning(capsys: pytest.CaptureFixture[str]) -> None:
    run = expertrack.init(project="steps")
    run.log({"loss": 1.0}, step=10)
    run.log({"loss": 2.0}, step=11)
    run.log({"loss": 0.5}, step=3)
    run.log({"loss": 0.6}, step=4)
    run.finish()
    err = capsys.readouterr().err
    assert err.count("refused") == 1
    assert "'loss'" in err and "step 3" in err and "step 11" in err
    assert read(run).scalars("loss")[0].tolist() == [10, 11]


def test_values_numpy_nested_nan_inf_and_arrays() -> None:
    run = expertrack.init(project="values")
    run.log(
        {
            "np32": np.float32(1.5),
            "np_int": np.int64(3),
            "flag": True,
            "nested": {"inner": {"x": 2.0}},
            "nan": float("nan"),
            "pinf": float("inf"),
            "ninf": -math.inf,
            "util": np.array([[0.5, 0.5], [0.25, 0.75]], dtype=np.float32),
            "vec": [1, 2, 3],
        }
    )
    run.finish()
    stored = read(run)
    assert stored.scalars("np32")[2].tolist() == [1.5]
    assert stored.scalars("np_int")[2].tolist() == [3.0]
    assert stored.scalars("flag")[2].tolist() == [1.0]
    assert stored.scalars("nested/inner/x")[2].tolist() == [2.0]
    assert math.isnan(stored.scalars("nan")[2][0])
    assert stored.scalars("pinf")[2][0] == math.inf and stored.scalars("ninf")[2][0] == -math.inf
    steps, util = stored.arrays("util")
    assert steps.tolist() == [0] and util.dtype == np.float32
    np.testing.assert_array_equal(util[0], [[0.5, 0.5], [0.25, 0.75]])
    assert stored.arrays("vec")[1].tolist() == [[1.0, 2.0, 3.0]]


def test_logged_array_is_copied() -> None:
    run = expertrack.init(project="values")
    buffer = np.zeros(3)
    run.log({"buf": buffer})
    buffer[:] = 9.0  # the caller reuses its buffer
    run.finish()
    assert read(run).arrays("buf")[1].tolist() == [[0.0, 0.0, 0.0]]


def test_torch_tensors_as_scalars_and_arrays() -> None:
    torch = pytest.importorskip("torch")
    run = expertrack.init(project="tensors")
    loss = torch.tensor(2.5, requires_grad=True) * 1.0
    run.log({"loss": loss, "util": torch.tensor([0.25, 0.75], dtype=torch.bfloat16)})
    run.finish()
    stored = read(run)
    assert stored.scalars("loss")[2].tolist() == [2.5]
    assert stored.arrays("util")[1].tolist() == [[0.25, 0.75]]


def test_config_summary_and_define_metric() -> None:
    run = expertrack.init(project="cfg", config={"lr": 0.1, "model": {"layers": 2}})
    run.config.update({"batch": 8})
    run.config["seed"] = 3
    assert run.config.lr == 0.1 and run.config["model"] == {"layers": 2}
    run.define_metric("val/*", summary="min")
    run.define_metric("acc", summary="max,mean")
    run.define_metric("hidden", summary="none")
    for i, (val, acc) in enumerate([(3.0, 0.1), (1.0, 0.5), (2.0, 0.3)]):
        run.log({"val/loss": val, "acc": acc, "hidden": i, "train/loss": val * 2})
    assert run.summary["val/loss"] == {"min": 1.0}
    run.summary["best_epoch"] = 1
    run.finish()
    stored = read(run)
    assert stored.config == {"lr": 0.1, "model": {"layers": 2}, "batch": 8, "seed": 3}
    assert stored.summary["val/loss"] == {"min": 1.0}
    assert stored.summary["acc"] == {"max": 0.5, "mean": pytest.approx(0.3)}
    assert "hidden" not in stored.summary
    assert stored.summary["train/loss"] == 4.0
    assert stored.summary["best_epoch"] == 1
    assert stored.metric_defs[0]["name"] == "val/*"


def test_bad_define_metric_summary_names_the_problem() -> None:
    run = expertrack.init(project="cfg")
    with pytest.raises(ValueError, match="'median' is not one of"):
        run.define_metric("loss", summary="median")


def test_context_manager_marks_failure() -> None:
    with pytest.raises(RuntimeError), expertrack.init(project="ctx") as run:
        run.log({"loss": 1.0})
        raise RuntimeError("boom")
    stored = read(run)
    assert stored.state == "failed" and stored.exit_code == 1
    assert stored.scalars("loss")[2].tolist() == [1.0]


def test_resume_continues_steps_and_summary(tracking_dir: Path) -> None:
    run = expertrack.init(project="res", id="resume01", config={"lr": 1})
    for v in (5.0, 2.0, 4.0):
        run.log({"loss": v})
    run.define_metric("loss", summary="min")
    run.finish()
    with pytest.raises(expertrack.ExpertrackError, match="already exists"):
        expertrack.init(project="res", id="resume01")
    again = expertrack.init(project="res", id="resume01", resume="allow", config={"epochs": 2})
    assert again.step == 3
    again.log({"loss": 3.0})
    again.finish()
    stored = expertrack.Api(tracking_dir).run("resume01")
    assert stored.scalars("loss")[0].tolist() == [0, 1, 2, 3]
    assert stored.summary["loss"] == {"min": 2.0}
    assert stored.config == {"lr": 1, "epochs": 2}
    assert stored.state == "finished"


def test_several_threads_log_to_one_run() -> None:
    run = expertrack.init(project="threads")

    def worker(name: str) -> None:
        for i in range(2000):
            run.log({f"{name}/v": float(i)})

    threads = [threading.Thread(target=worker, args=(f"t{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.finish()
    stored = read(run)
    for n in range(4):
        steps, _, values = stored.scalars(f"t{n}/v")
        assert values.tolist() == [float(i) for i in range(2000)]
        assert np.all(np.diff(steps) > 0)
    all_steps = np.concatenate([stored.scalars(f"t{n}/v")[0] for n in range(4)])
    assert len(set(all_steps.tolist())) == 8000  # every call got its own step


def test_disabled_mode_stores_nothing(tracking_dir: Path) -> None:
    run = expertrack.init(project="off", mode="disabled")
    run.log({"loss": 1.0})
    run.config["x"] = 1
    run.finish()
    assert not tracking_dir.exists()


def test_short_run_records_its_environment() -> None:
    run = expertrack.init(project="env")
    run.finish()  # at once: the environment must still be there
    env = read(run).environment
    assert env and "python" in str(env).lower()


def test_plus_and_minus_infinity_mean_is_nan_without_warnings(recwarn: pytest.WarningsRecorder) -> None:
    run = expertrack.init(project="inf")
    run.define_metric("x", summary="mean,max")
    run.log({"x": math.inf})
    run.log({"x": -math.inf})
    run.finish()
    summary = read(run).summary["x"]
    assert math.isnan(summary["mean"]) and summary["max"] == math.inf
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_publish_writes_the_open_row_without_closing_it() -> None:
    run = expertrack.init(project="pub")
    run.log({"train_loss": 2.0}, step=5)  # an explicit step: the row stays open
    run.publish()
    run.flush()
    assert read(run).scalars("train_loss")[0].tolist() == [5]  # visible before step 6 arrives
    run.log({"val_loss": 1.5}, step=5)  # still step 5
    run.log({"train_loss": 1.9}, step=6)
    run.finish()
    stored = read(run)
    assert stored.scalars("val_loss")[0].tolist() == [5]
    assert stored.scalars("train_loss")[0].tolist() == [5, 6]


@pytest.mark.parametrize("sealed", [False, True], ids=["tail-in-memory", "tail-sealed"])
def test_a_key_logged_again_at_a_published_step_keeps_one_point_the_later_value(
    sealed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if sealed:  # the published point went into a piece or chunk already written: readers keep the last
        monkeypatch.setattr("expertrack.writer.SEAL_FLUSHES", 1)
    run = expertrack.init(project="pub")
    run.log({"train_loss": 1.0}, step=4)
    run.log({"train_loss": 1.0}, step=5)
    run.publish()
    run.flush()
    run.log({"train_loss": 2.0, "eval_loss": 1.5}, step=5)
    run.log({"train_loss": 0.5}, step=6)
    run.finish()
    stored = read(run)
    steps, _, values = stored.scalars("train_loss")
    assert (steps.tolist(), values.tolist()) == ([4, 5, 6], [1.0, 2.0, 0.5])
    history = stored.history()
    assert history["_step"].tolist() == [4, 5, 6]
    assert history["train_loss"].tolist() == [1.0, 2.0, 0.5]
    assert stored.summary["train_loss"] == 0.5


def test_api_on_a_store_being_created_has_no_runs(tracking_dir: Path) -> None:
    import sqlite3

    tracking_dir.mkdir(parents=True)
    sqlite3.connect(tracking_dir / "store.db").close()  # the file exists, its schema not yet
    assert expertrack.Api(tracking_dir).runs() == []
    with pytest.raises(expertrack.RunNotFoundError):
        expertrack.Api(tracking_dir).run("x")


def test_tensor_changed_in_place_after_log_is_stored_as_logged() -> None:
    torch = pytest.importorskip("torch")
    run = expertrack.init(project="tensors")
    acc, vec = torch.zeros(()), torch.zeros(2)
    for step in range(5):
        acc += step + 1
        vec.add_(step + 1)
        run.log({"acc": acc, "vec": vec})
        acc.zero_()  # the usual running-average reset, right after log()
        vec.zero_()
    run.finish()
    stored = read(run)
    assert stored.scalars("acc")[2].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert stored.arrays("vec")[1].tolist() == [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0], [5.0, 5.0]]
    assert stored.summary["acc"] == 5.0


def test_log_never_reads_a_tensor_on_the_calling_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    run = expertrack.init(project="tensors")
    values = {"loss": torch.tensor(2.0), "dp_loss": torch.tensor([1.0]), "util": torch.ones(3)}
    host_reads: list[str] = []

    def recording(method: str) -> object:
        original = getattr(torch.Tensor, method)

        def read_back(self: object, *args: object, **kwargs: object) -> object:
            if threading.current_thread() is threading.main_thread():
                host_reads.append(method)
            return original(self, *args, **kwargs)

        return read_back

    for method in ("item", "cpu", "tolist", "numpy", "__float__", "__bool__", "__index__", "__int__"):
        monkeypatch.setattr(torch.Tensor, method, recording(method))
    for _ in range(3):
        run.log(values)
    monkeypatch.undo()
    assert host_reads == []  # a CUDA tensor read here would wait for the device
    run.finish()
    assert read(run).scalars("dp_loss")[2].tolist() == [1.0, 1.0, 1.0]


def test_one_element_tensors_and_arrays_are_scalars_as_in_wandb() -> None:
    torch = pytest.importorskip("torch")
    run = expertrack.init(project="values")
    run.log(
        {
            "dp_loss": torch.tensor([0.5]),  # nn.DataParallel gathers the loss as shape [1]
            "t11": torch.tensor([[3.5]], requires_grad=True) * 1.0,
            "n1": np.array([1.5]),
            "n11": np.array([[2.5]], dtype=np.float32),
            "two": np.array([1.0, 2.0]),
        }
    )
    run.finish()
    stored = read(run)
    for key, value in {"dp_loss": 0.5, "t11": 3.5, "n1": 1.5, "n11": 2.5}.items():
        assert stored.scalars(key)[2].tolist() == [value], key
        assert stored.summary[key] == value, key
        assert stored.history()[key].tolist() == [value], key
    assert stored.array_keys() == ["two"]


def test_summary_set_as_an_attribute_is_stored() -> None:
    run = expertrack.init(project="summary")
    expertrack.summary.best = 5  # wandb.summary.best = 5
    run.summary.best2 = 6
    run.summary["best3"] = 7
    assert run.summary.best == 5 and run.summary["best2"] == 6
    run.finish()
    stored = read(run).summary
    assert (stored["best"], stored["best2"], stored["best3"]) == (5, 6, 7)


def test_logging_a_key_replaces_the_value_set_by_hand_as_in_wandb() -> None:
    run = expertrack.init(project="summary")
    run.log({"loss": 1.0, "acc": 0.5})
    run.summary["loss"] = 99
    run.log({"loss": 0.01})  # logged after: the logged value wins
    run.log({"acc": 0.6})
    run.summary["acc"] = 0.9  # set after: the value set by hand wins
    assert run.summary["loss"] == 0.01 and run.summary["acc"] == 0.9
    run.finish()
    stored = read(run).summary
    assert stored["loss"] == 0.01 and stored["acc"] == 0.9


def test_disabled_mode_summary_reads_back_like_a_dict(tracking_dir: Path) -> None:
    run = expertrack.init(project="off", mode="disabled")
    run.summary["a"] = 1
    run.summary.b = 2
    assert run.summary["a"] == 1 and run.summary.b == 2 and dict(run.summary) == {"a": 1, "b": 2}
    del run.summary["a"]
    assert "a" not in run.summary
    run.finish()
    assert not tracking_dir.exists()


def test_resume_keeps_the_summary_set_by_hand_and_the_run_fields(tracking_dir: Path) -> None:
    run = expertrack.init(project="res", id="resume02", tags=["moe"], group="sweep", notes="first")
    assert run.resumed is False
    for v in (3.0, 1.0):
        run.log({"loss": v})
    run.summary["best_epoch"] = 4
    run.summary["loss"] = 0.5  # set by hand over the logged last value
    run.finish()
    again = expertrack.init(id="resume02", resume="allow")
    assert again.resumed is True
    assert (again.project, again.tags, again.group, again.notes) == ("res", ["moe"], "sweep", "first")
    assert again.summary["best_epoch"] == 4 and again.summary["loss"] == 0.5
    again.log({"acc": 0.7})
    again.finish()
    stored = expertrack.Api(tracking_dir).run("resume02")
    assert stored.summary == {"loss": 0.5, "best_epoch": 4, "acc": 0.7}
    assert (stored.project, stored.tags, stored.group) == ("res", ["moe"], "sweep")
    third = expertrack.init(id="resume02", resume="allow", tags=["moe", "lb"])
    third.log({"loss": 0.25})  # logging the key again replaces the value set by hand
    third.finish()
    stored = expertrack.Api(tracking_dir).run("resume02")
    assert stored.tags == ["moe", "lb"] and stored.summary["loss"] == 0.25 and stored.summary["best_epoch"] == 4


@pytest.mark.parametrize(
    ("option", "kept"),
    [("config_exclude_keys", {"lr": 0.1, "layers": 2}), ("config_include_keys", {"api_key": "s3cret"})],
)
def test_config_exclude_and_include_keys(option: str, kept: dict[str, object]) -> None:
    config = {"lr": 0.1, "layers": 2, "api_key": "s3cret"}
    run = expertrack.init(project="cfg", config=config, **{option: ["api_key"]})
    assert dict(run.config) == kept
    run.finish()
    assert read(run).config == kept


def test_config_exclude_and_include_keys_together_is_an_error() -> None:
    with pytest.raises(ValueError, match="not both"):
        expertrack.init(project="cfg", config={"a": 1}, config_exclude_keys=["a"], config_include_keys=["a"])


@pytest.mark.parametrize(
    ("code", "state", "exit_code"), [(None, "finished", 0), (-1, "failed", 255), ("bye", "failed", 1)]
)
def test_system_exit_inside_a_with_block_records_the_status_the_process_gets(
    tracking_dir: Path, code: object, state: str, exit_code: int
) -> None:
    with pytest.raises(SystemExit), expertrack.init(project="with") as run:
        raise SystemExit(code)
    stored = expertrack.Api(tracking_dir).run(run.id)
    assert (stored.state, stored.exit_code) == (state, exit_code)
