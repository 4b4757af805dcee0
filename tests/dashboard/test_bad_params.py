"""Numeric query parameters out of SQLite's 64-bit range (or absurdly long) are a clear 400, never a 500."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from expertrack.dashboard.app import create_app
from tests.dashboard.builders import dense_run, moe_run

HUGE = str(2**63)  # one past the largest int64
TINY = str(-(2**63) - 1)
LONG = "9" * 5000  # past Python's int-from-text digit limit


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestClient, str, str]:
    directory = tmp_path_factory.mktemp("bad-params")
    dense, moe = dense_run(directory), moe_run(directory)
    return TestClient(create_app(directory), base_url="http://127.0.0.1:8080"), dense, moe


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/series?key=train/loss&runs={dense}&after={v}", "after"),
        ("/api/series?key=train/loss&runs={dense},{moe}&after=,{v}", "after"),
        ("/api/runs/{dense}/console?offset={v}", "offset"),
        ("/api/runs/{moe}/array?key=moe/affinity&step={v}", "step"),
        ("/api/series?key=train/loss&runs={dense}&buckets={v}", "buckets"),
    ],
)
@pytest.mark.parametrize("value", [HUGE, TINY, LONG], ids=["2^63", "-2^63-1", "5000-digits"])
def test_out_of_range_integers_are_a_clear_400(
    client: tuple[TestClient, str, str], path: str, name: str, value: str
) -> None:
    http, dense, moe = client
    response = http.get(path.format(dense=dense, moe=moe, v=value))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error.startswith(f"{name}:") and len(error) < 300


@pytest.mark.parametrize("value", ["1e300", "-1e300", str(2**70)])
def test_huge_but_finite_x_range_is_answered(client: tuple[TestClient, str, str], value: str) -> None:
    http, dense, _moe = client
    response = http.get(f"/api/series?key=train/loss&runs={dense}&lo=-{value.lstrip('-')}&hi={value.lstrip('-')}")
    assert response.status_code == 200, response.text
    assert dense in response.json()["series"]


def test_the_largest_int64_step_is_valid(client: tuple[TestClient, str, str]) -> None:
    http, dense, _moe = client
    response = http.get(f"/api/series?key=train/loss&runs={dense}&after={2**63 - 1}")
    assert response.status_code == 200, response.text
