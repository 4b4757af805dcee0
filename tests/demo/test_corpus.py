"""The demo corpus: built from the Python installation, deterministic, split per domain, no download."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from expertrack.demo import corpus as C


def test_builtin_corpus_is_deterministic_and_split_per_domain() -> None:
    first, second = C.builtin_corpus(), C.builtin_corpus()
    assert first.names == ["code", "math", "prose"]
    assert first.fingerprint() == second.fingerprint()
    for name, size in first.sizes().items():
        total = size["train"] + size["val"]
        assert total > 200_000, f"{name} has only {total} bytes"
        assert size["val"] == round(total * 0.1), name  # the last tenth is validation
    for d in first.domains:  # validation is the tail of the domain's bytes, never seen in training
        assert d.train.dtype == np.uint8 and d.val.dtype == np.uint8


def test_every_code_module_is_found_on_this_python() -> None:
    _, sources = C.code_text()
    assert len(sources) == len(C.CODE_MODULES)
    assert all(Path(p).suffix == ".py" for p in sources)


def test_prose_is_prose_not_code_or_grammar() -> None:
    text = C.prose_text()[0].decode("utf-8")
    lines = [ln for ln in text.split("\n") if ln]
    assert not any(ln.startswith((" ", "\t", ">>>")) for ln in lines)
    assert not any(re.fullmatch(r"[*=\-]{3,}", ln) for ln in lines)
    words = re.findall(r"[A-Za-z]+", text)
    assert sum(w.lower() in {"the", "a", "of", "is"} for w in words) / len(words) > 0.1  # English function words


def test_math_is_seeded_and_its_answers_are_right() -> None:
    text, _ = C.math_text(seed=7, n_bytes=50_000)
    assert text == C.math_text(seed=7, n_bytes=50_000)[0]
    assert text != C.math_text(seed=8, n_bytes=50_000)[0]
    s = text.decode()
    sums = re.findall(r"Compute (\d+) ([+-]) (\d+)\.\nAnswer: \1 \2 \3 = (-?\d+)\.", s)
    roots = re.findall(r"Solve for x: (\d+)x ([+-]) (\d+) = (-?\d+)\.(?:.|\n)*?Answer: x = (-?\d+)\.", s)
    assert len(sums) > 50 and len(roots) > 50
    for a, op, b, r in sums:
        assert int(r) == (int(a) + int(b) if op == "+" else int(a) - int(b))
    for a, sign, b, c, x in roots:
        assert int(a) * int(x) + (int(b) if sign == "+" else -int(b)) == int(c)


def test_load_dir_reads_one_folder_per_domain(tmp_path: Path) -> None:
    for domain, text in [("legal", "whereas " * 400), ("chat", "hi there!\n" * 300)]:
        (tmp_path / domain).mkdir()
        (tmp_path / domain / "a.txt").write_text(text)
        (tmp_path / domain / ".hidden").write_text("skipped")
    corpus = C.load_dir(tmp_path)
    assert corpus.names == ["chat", "legal"]
    chat = corpus.domains[0]
    assert chat.size == len("hi there!\n" * 300) + 1  # files are joined by a blank line
    assert b"skipped" not in chat.train.tobytes() + chat.val.tobytes()


def test_load_dir_rejects_a_folder_without_domains(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one sub-folder per domain"):
        C.load_dir(tmp_path)
    with pytest.raises(FileNotFoundError):
        C.load_dir(tmp_path / "missing")


def test_batches_mix_every_domain_and_shift_targets_by_one() -> None:
    corpus = C.builtin_corpus()
    x, y, d = C.get_batch(corpus, "train", 3, 32, np.random.default_rng(0))
    assert x.shape == y.shape == (9, 32) and d.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert (x[:, 1:] == y[:, :-1]).all()
    x2, _, _ = C.get_batch(corpus, "train", 3, 32, np.random.default_rng(0))
    assert (x == x2).all()
