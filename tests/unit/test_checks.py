"""mlflow_app/checks.py: how a probe's outcome becomes a check result, and the table."""

from __future__ import annotations

import threading

from mlflow_app.checks import Check, CheckFailure, CheckResult, CheckWarning, _timed
from mlflow_app.config import load_settings
from mlflow_app.findings import render_table

SETTINGS = load_settings(
    {
        "MLFLOW_BACKEND_STORE_URI": "postgresql://mlflow:s3cret-Pw@db/mlflow",
        "MLFLOW_APP_CHECK_TIMEOUT_SECONDS": "0.2",
    }
)


def result_of(probe) -> CheckResult:
    return _timed(Check("store", probe, "the check's own fix"), SETTINGS)


def test_a_passing_probe_gives_its_reason() -> None:
    result = result_of(lambda: "answers")
    assert (result.status, result.reason, result.fix) == ("ok", "answers", "")


def test_a_failing_probe_names_the_error_without_the_password_and_gives_the_fix() -> None:
    def probe() -> str:
        raise ConnectionError("could not reach postgresql://mlflow:s3cret-Pw@db\nsecond line")

    result = result_of(probe)
    assert result.status == "failed"
    assert result.reason == "ConnectionError: could not reach postgresql://mlflow:***@db"
    assert result.fix == "the check's own fix"


def test_a_warning_and_a_failure_with_their_own_fix_keep_it() -> None:
    def warn() -> str:
        raise CheckWarning("close to the limit", "raise the limit")

    def fail() -> str:
        raise CheckFailure("lacks CREATE MODEL", "GRANT CREATE MODEL ON SCHEMA a.b TO `sp`")

    warned, failed = result_of(warn), result_of(fail)
    assert (warned.ok, warned.status, warned.fix) == (True, "warning", "raise the limit")
    assert (failed.ok, failed.fix) == (False, "GRANT CREATE MODEL ON SCHEMA a.b TO `sp`")


def test_a_hung_probe_fails_at_the_time_limit() -> None:
    release = threading.Event()
    result = result_of(lambda: release.wait(5) and "late")
    release.set()
    assert not result.ok and result.reason == "no answer within 0.2 s"


def test_the_table_has_a_row_per_check_with_the_fix_last() -> None:
    table = render_table(
        [
            CheckResult("tracking_store", True, 1.0, "answers"),
            CheckResult("grants", False, 1.0, "lacks X", "GRANT X"),
        ]
    ).splitlines()
    assert table[0].split() == ["check", "result", "reason", "fix"]
    assert table[1].split() == ["tracking_store", "ok", "answers"]
    assert table[2].split()[:2] == ["grants", "FAILED"] and table[2].endswith("GRANT X")
