"""Each kind of setting: its default when unset, what it takes, and its one-line refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_app.setting_kinds import (
    ConfigError,
    Directory,
    Flag,
    Items,
    OneOf,
    PathPrefix,
    Seconds,
    SecretFile,
    UrlPath,
    Whole,
)


@pytest.mark.parametrize(
    ("kind", "raw", "value"),
    [
        (Flag(False), None, False),
        (Flag(False), "Yes", True),
        (Flag(True), "off", False),
        (Whole(4, 1, 64, "fix"), None, 4),
        (Whole(4, 1, 64, "fix"), "64", 64),
        (Seconds(5.0, 0, 3600), "0.5", 0.5),
        (UrlPath("/healthz"), None, "/healthz"),
        (UrlPath("/healthz"), "/live", "/live"),
        (PathPrefix(), None, ""),
        (PathPrefix(), "/mlflow", "/mlflow"),
        (OneOf("info", ("debug", "info")), "DEBUG", "debug"),
        (Items(), " a, ,b ", ("a", "b")),
        (Directory(), None, None),
    ],
)
def test_a_kind_takes_its_values_and_defaults(kind, raw: str | None, value: object) -> None:
    assert kind.parse("MLFLOW_X", raw) == value


@pytest.mark.parametrize(
    ("kind", "raw", "problem"),
    [
        (Flag(False), "maybe", "is not true or false"),
        (Whole(4, 1, 64, "set it to threads"), "65", "is not a whole number from 1 to 64"),
        (Whole(4, 1, 64, "set it to threads"), "-1", "is not a whole number"),
        (Seconds(5.0, 0, 3600), "soon", "is not a number from 0 to 3600"),
        (Seconds(5.0, 0, 3600), "nan", "is not a number"),
        (UrlPath("/healthz"), "healthz", "is not a URL path"),
        (UrlPath("/healthz"), "/", "is not a URL path"),
        (PathPrefix(), "/mlflow/", "is not a path prefix"),
        (OneOf("info", ("debug", "info")), "loud", "is not one of debug, info"),
    ],
)
def test_a_value_a_kind_cannot_take_is_one_line_naming_the_setting(
    kind, raw: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        kind.parse("MLFLOW_X", raw)
    message = str(refused.value)
    assert message.startswith(f"MLFLOW_X: '{raw}' ") and problem in message
    assert "; " in message and "\n" not in message
    assert refused.value.setting == "MLFLOW_X"


def test_a_secret_file_gives_its_content_and_names_what_belongs_in_it(tmp_path: Path) -> None:
    kind = SecretFile("the password")
    (tmp_path / "pw").write_text("s3cret\n")
    assert kind.parse("MLFLOW_X_FILE", str(tmp_path / "pw")) == "s3cret"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty; put the password in the file"):
        kind.parse("MLFLOW_X_FILE", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"cannot read .* mount the secret file there"):
        kind.parse("MLFLOW_X_FILE", str(tmp_path / "missing"))


def test_each_kind_documents_its_default() -> None:
    assert Flag(True).documented == "true"
    assert Seconds(5.0, 0, 1).documented == "5"
    assert Whole(None, 1, 2, "").documented == ""
    assert UrlPath("/metrics").documented == "/metrics"
