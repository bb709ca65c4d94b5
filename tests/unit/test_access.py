"""mlflow_app/access.py's password cache: a checked password is trusted for a minute, then
checked again; keys are HMACs under a per-process secret."""

from __future__ import annotations

import pytest

from mlflow_app import access
from mlflow_app.store_environment import AUTH_CACHE_SECONDS


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every password check that reaches MLflow's user store (the expensive hash)."""
    from mlflow.server.auth import store

    seen: list[tuple[str, str]] = []

    def authenticate_user(username: str, password: str) -> bool:
        seen.append((username, password))
        return password == "right"

    monkeypatch.setattr(store, "authenticate_user", authenticate_user)
    return seen


def test_a_checked_password_is_trusted_until_the_cache_time_passes(checks) -> None:
    clock = Clock()
    cache = access._PasswordCache(timer=clock)
    assert cache.valid("ann", "right") and cache.valid("ann", "right")
    assert len(checks) == 1
    clock.now += AUTH_CACHE_SECONDS + 1
    assert cache.valid("ann", "right")
    assert len(checks) == 2


def test_a_wrong_password_is_never_remembered(checks) -> None:
    cache = access._PasswordCache(timer=Clock())
    assert not cache.valid("ann", "wrong") and not cache.valid("ann", "wrong")
    assert len(checks) == 2


def test_the_cache_holds_no_plain_or_bare_hashed_password(checks) -> None:
    import hashlib

    cache = access._PasswordCache(timer=Clock())
    cache.valid("ann", "right")
    (key,) = list(cache._valid.keys())
    assert b"right" not in key
    assert key != hashlib.sha256(b"ann\0right").digest()
    assert access._PasswordCache(timer=Clock())._secret != cache._secret
