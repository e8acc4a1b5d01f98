"""Settings of the local control plane read from the environment."""

from __future__ import annotations

import pytest

from devcluster.cluster import controller_qps


def test_controller_qps_unset_means_the_controllers_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEVCLUSTER_CONTROLLER_QPS", raising=False)
    assert controller_qps() is None
    monkeypatch.setenv("DEVCLUSTER_CONTROLLER_QPS", " ")
    assert controller_qps() is None


def test_controller_qps_is_a_positive_integer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVCLUSTER_CONTROLLER_QPS", "200")
    assert controller_qps() == 200
    for bad in ("0", "-5", "2.5", "fast"):
        monkeypatch.setenv("DEVCLUSTER_CONTROLLER_QPS", bad)
        with pytest.raises(ValueError, match="DEVCLUSTER_CONTROLLER_QPS"):
            controller_qps()
