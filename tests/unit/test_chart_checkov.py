"""A third-party scanner on the chart: checkov (offline) over `helm template` of a production-style install.

Every finding is fixed or waived in charts/strategy-rollouts/ci/checkov-waivers.yaml with its reason.
Needs checkov in its own venv (`make checkov`; `make test` installs it) and the cached helm.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.unit.test_chart_static import CHART, helm

CHECKOV = Path(os.environ.get("CHECKOV", Path.home() / ".cache/strategy-rollouts/tools/checkov-3.3.30/bin/checkov"))
# Every optional part of the chart on, over the hardened values (digest pin, NetworkPolicy).
FEATURES = [
    "prometheusRule.enabled=true",
    "metrics.serviceMonitor.enabled=true",
    "gateTemplates.enabled=true",
    "dashboard.enabled=true",
    "grafanaDashboard.enabled=true",
]


def findings(tmp_path: Path) -> list[dict[str, Any]]:
    assert CHECKOV.exists(), f"{CHECKOV} missing: run `make checkov` (make test does)"
    sets = [a for f in FEATURES for a in ("--set", f)]
    rendered = helm("template", "sr", str(CHART), "-n", "ops", "-f", str(CHART / "ci/hardened-values.yaml"), *sets)
    manifest = tmp_path / "chart.yaml"
    manifest.write_text(rendered.stdout)
    run = subprocess.run(
        [str(CHECKOV), "-f", str(manifest), "--framework", "kubernetes", "--skip-download", "-o", "json", "--quiet"],
        capture_output=True,
        text=True,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
    )
    assert run.stdout.strip(), run.stderr[-2000:]
    report = json.loads(run.stdout)
    reports = report if isinstance(report, list) else [report]
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    assert passed > 50, f"checkov checked too little ({passed} passed): {run.stderr[-1000:]}"
    return [f for r in reports for f in r.get("results", {}).get("failed_checks", [])]


def test_checkov_finds_nothing_unwaived_and_every_waiver_is_current(tmp_path: Path) -> None:
    waivers = yaml.safe_load((CHART / "ci/checkov-waivers.yaml").read_text())["waivers"]
    assert all(str(w.get("reason", "")).strip() for w in waivers), "every waiver says why"
    found = findings(tmp_path)
    waived = {(w["check"], w["resource"]) for w in waivers}
    open_ = sorted(
        {(f["check_id"], f["resource"], f["check_name"]) for f in found if (f["check_id"], f["resource"]) not in waived}
    )
    assert not open_, "checkov findings (fix, or waive with a reason in ci/checkov-waivers.yaml):\n" + "\n".join(
        f"{c} {r}: {n}" for c, r, n in open_
    )
    stale = waived - {(f["check_id"], f["resource"]) for f in found}
    assert not stale, f"waivers that match no finding any more (remove them): {sorted(stale)}"
