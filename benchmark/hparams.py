"""Declared hyperparameters and dataset options: a default and a search space, side by side.

Plugins declare ``hparams = {"gamma": HParam(2.0, LogUniform(0.5, 5.0), "focusing parameter")}``.
``--set key=value`` parses the value with the default's type and rejects undeclared keys.
Random draws are seeded by a hash of (seed, name), so adding a hyperparameter never changes
another's values (DomainBed's ``seed_hash`` habit).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmark.errors import BenchError, UnknownNameError


class Space:
    """A search distribution for one hyperparameter."""

    def sample(self, rng: np.random.RandomState) -> Any:
        raise NotImplementedError

    def grid(self, n: int) -> list[Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class Uniform(Space):
    low: float
    high: float

    def sample(self, rng: np.random.RandomState) -> float:
        return float(rng.uniform(self.low, self.high))

    def grid(self, n: int) -> list[float]:
        return [float(v) for v in np.linspace(self.low, self.high, n)]


@dataclass(frozen=True)
class LogUniform(Space):
    low: float
    high: float

    def sample(self, rng: np.random.RandomState) -> float:
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))

    def grid(self, n: int) -> list[float]:
        return [float(v) for v in np.geomspace(self.low, self.high, n)]


@dataclass(frozen=True)
class IntUniform(Space):
    low: int
    high: int  # inclusive

    def sample(self, rng: np.random.RandomState) -> int:
        return int(rng.randint(self.low, self.high + 1))

    def grid(self, n: int) -> list[int]:
        return sorted({round(v) for v in np.linspace(self.low, self.high, n)})


@dataclass(frozen=True)
class Choice(Space):
    values: tuple[Any, ...]

    def sample(self, rng: np.random.RandomState) -> Any:
        return self.values[int(rng.randint(len(self.values)))]

    def grid(self, n: int) -> list[Any]:
        return list(self.values)


@dataclass(frozen=True)
class HParam:
    """One declared hyperparameter (or dataset option).

    ``test_time=True`` marks a knob that does not change training (TDE's alpha): changing it
    reuses the cached checkpoint.
    """

    default: Any
    space: Space | None = None
    help: str = ""
    test_time: bool = False
    choices: tuple[Any, ...] | None = None

    def parse(self, name: str, text: str) -> Any:
        """Parse ``text`` from the command line with the type of the default."""
        value = parse_value(text)
        return self.check(name, value)

    def check(self, name: str, value: Any) -> Any:
        default = self.default
        try:
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise TypeError
            elif isinstance(default, int):
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise TypeError
                value = int(value)
            elif isinstance(default, float):
                if isinstance(value, bool):
                    raise TypeError
                value = float(value)
            elif isinstance(default, str):
                value = str(value)
            elif isinstance(default, (list, tuple)):
                if not isinstance(value, (list, tuple)):
                    value = [value]
                value = list(value)
        except (TypeError, ValueError):
            kind = type(default).__name__
            raise BenchError(
                f"--set {name}={value!r}: expected a {kind} like {default!r}"
            ) from None
        if self.choices is not None and value not in self.choices:
            raise BenchError(f"--set {name}={value!r}: choose one of {list(self.choices)}")
        return value


def parse_value(text: str) -> Any:
    """``"0.1"`` -> 0.1, ``"true"`` -> True, ``"[120,160]"`` -> [120, 160], else the string."""
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_assignments(pairs: Sequence[str]) -> dict[str, str]:
    """``["lr=0.1", "dataset.imbalance=50"]`` -> {"lr": "0.1", "dataset.imbalance": "50"}."""
    out: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            raise BenchError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


@dataclass
class Resolved:
    """Hyperparameters after defaults and overrides; ``declared`` keeps the declarations."""

    values: dict[str, Any]
    declared: Mapping[str, HParam] = field(repr=False)

    def training(self) -> dict[str, Any]:
        """The values that shape training (test-time knobs removed)."""
        return {k: v for k, v in self.values.items() if not self.declared[k].test_time}


def resolve(
    declared: Mapping[str, HParam],
    overrides: Mapping[str, Any],
    *,
    what: str,
    defaults: Mapping[str, Any] | None = None,
    parse: bool = True,
) -> dict[str, Any]:
    """Defaults (optionally replaced by ``defaults``), then ``overrides``; undeclared keys raise."""
    values = {k: h.default for k, h in declared.items()}
    for key, value in (defaults or {}).items():
        if key in declared:
            values[key] = declared[key].check(key, value)
    for key, value in overrides.items():
        if key not in declared:
            raise UnknownNameError(f"{what} setting", key, declared)
        values[key] = (
            declared[key].parse(key, value)
            if parse and isinstance(value, str)
            else (declared[key].check(key, value))
        )
    return values


def seed_hash(*parts: Any) -> int:
    """A 31-bit seed from any JSON-able parts (stable across processes and platforms)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return int(hashlib.sha256(blob).hexdigest()[:8], 16) & 0x7FFFFFFF


def random_hparams(declared: Mapping[str, HParam], seed: int, *key: Any) -> dict[str, Any]:
    """One random draw of every searchable hyperparameter; seed 0 gives the defaults."""
    values = {k: h.default for k, h in declared.items()}
    if seed == 0:
        return values
    for name, h in declared.items():
        if h.space is not None:
            rng = np.random.RandomState(seed_hash(seed, *key, name))
            values[name] = h.space.sample(rng)
    return values
