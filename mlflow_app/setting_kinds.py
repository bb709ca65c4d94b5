"""How one setting's text becomes a value: the kinds a row of the settings table has.

Each kind parses and validates one environment variable and documents its own default; a value
it cannot take raises `ConfigError`, one line naming the setting, the problem and the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


class ConfigError(ValueError):
    """A setting has a value we cannot start with; the message says which and how to fix it."""

    def __init__(self, setting: str, problem: str, fix: str) -> None:
        super().__init__(f"{setting}: {problem}; {fix}")
        self.setting = setting


@dataclass(frozen=True)
class Text:
    """Any text; unset is `default`."""

    default: str | None = None

    def parse(self, name: str, raw: str | None) -> Any:
        return self.default if raw is None else raw

    @property
    def documented(self) -> str:
        return self.default or ""


@dataclass(frozen=True)
class Flag:
    default: bool | None

    def parse(self, name: str, raw: str | None) -> bool:
        if raw is None:
            return self.default
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ConfigError(name, f"'{raw}' is not true or false", f"set {name}=true or false")

    @property
    def documented(self) -> str:
        return str(self.default).lower()


@dataclass(frozen=True)
class Whole:
    """A whole number in [low, high]; `fix` says what it counts. Unset: `default` (None when a
    rule derives it)."""

    default: int | None
    low: int
    high: int
    fix: str

    def parse(self, name: str, raw: str | None) -> int | None:
        if raw is None:
            return self.default
        if not re.fullmatch(r"\d+", raw) or not self.low <= int(raw) <= self.high:
            raise ConfigError(
                name, f"'{raw}' is not a whole number from {self.low} to {self.high}", self.fix
            )
        return int(raw)

    @property
    def documented(self) -> str:
        return "" if self.default is None else str(self.default)


@dataclass(frozen=True)
class Seconds:
    default: float
    low: float
    high: float

    def parse(self, name: str, raw: str | None) -> float:
        if raw is None:
            return self.default
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not self.low <= value <= self.high:
            raise ConfigError(
                name,
                f"'{raw}' is not a number from {self.low:g} to {self.high:g}",
                f"set {name} to seconds, e.g. {self.default:g}",
            )
        return value

    @property
    def documented(self) -> str:
        return f"{self.default:g}"


@dataclass(frozen=True)
class UrlPath:
    """An absolute URL path of the service's own, such as /healthz."""

    default: str

    def parse(self, name: str, raw: str | None) -> str:
        value = raw or self.default
        if not value.startswith("/") or len(value) < 2 or value.endswith("/"):
            raise ConfigError(
                name, f"'{value}' is not a URL path", f"set it to a path such as {self.default}"
            )
        return value

    @property
    def documented(self) -> str:
        return self.default


@dataclass(frozen=True)
class PathPrefix:
    """A prefix for every route: empty, or starting and not ending with '/'."""

    def parse(self, name: str, raw: str | None) -> str:
        if raw and (not raw.startswith("/") or raw.endswith("/") or "{" in raw or "}" in raw):
            raise ConfigError(
                name,
                f"'{raw}' is not a path prefix",
                "start it with '/', end it without '/', e.g. /mlflow",
            )
        return raw or ""

    documented = ""


@dataclass(frozen=True)
class OneOf:
    """One of `choices`, matched without regard to case; returned as spelled there."""

    default: str
    choices: tuple[str, ...]

    def parse(self, name: str, raw: str | None) -> str:
        value = raw or self.default
        found = {c.lower(): c for c in self.choices}.get(value.lower())
        if found is None:
            raise ConfigError(
                name,
                f"'{value}' is not one of {', '.join(self.choices)}",
                f"set {name} to one of them",
            )
        return found

    @property
    def documented(self) -> str:
        return self.default


@dataclass(frozen=True)
class Items:
    """A comma-separated list; blanks between commas are dropped."""

    def parse(self, name: str, raw: str | None) -> tuple[str, ...]:
        return tuple(item.strip() for item in (raw or "").split(",") if item.strip())

    documented = ""


@dataclass(frozen=True)
class Directory:
    """A local directory, made absolute; unset is `default` (None: none)."""

    default: str | None = None

    def parse(self, name: str, raw: str | None) -> Path | None:
        value = raw or self.default
        return Path(value).expanduser().resolve() if value else None

    @property
    def documented(self) -> str:
        return self.default or ""


@dataclass(frozen=True)
class SecretFile:
    """A file holding a secret (a mounted secret): its content, stripped."""

    what: str

    def parse(self, name: str, raw: str | None) -> str | None:
        if raw is None:
            return None
        try:
            content = Path(raw).read_text().strip()
        except OSError as error:
            raise ConfigError(
                name,
                f"cannot read '{raw}' ({error.strerror})",
                "mount the secret file there or unset it",
            ) from None
        if not content:
            raise ConfigError(name, f"'{raw}' is empty", f"put {self.what} in the file")
        return content

    documented = ""


Kind = Text | Flag | Whole | Seconds | UrlPath | PathPrefix | OneOf | Items | Directory | SecretFile
