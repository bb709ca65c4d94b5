"""The rules that join settings: identities, CPU quotas (what load_settings derives is in
test_config.py, through the table)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlflow_app.config_rules import available_cpus, normal_identity


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        (" Alice@Example.COM ", "alice@example.com"),
        ("svc-principal-7", "svc-principal-7"),
        ("a@example.com,b@example.com", None),
        ("a b", None),
        ("x" * 255, None),
        ("bad\x00id", None),
        ("", None),
    ],
)
def test_identities_are_case_folded_emails_or_refused(raw: str, normal: str | None) -> None:
    assert normal_identity(raw) == normal


def test_workers_follow_the_cgroup_quota_not_the_host(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs
    assert available_cpus(tmp_path) == 2
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    assert available_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(tmp_path) == min(len(os.sched_getaffinity(0)), os.cpu_count() or 1)
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus(v1) == 1
