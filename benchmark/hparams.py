"""Declared hyperparameters and dataset options: a default and a search space, side by side.

Plugins declare ``hparams = {"gamma": HParam(2.0, LogUniform(0.5, 5.0), "focusing parameter")}``.
``--set key=value`` parses the value with the default's type and rejects undeclared keys;
``valid=`` (``Range``, ``Each``, ``POSITIVE``, ...) says which values are admitted at all, and
every value is checked against it before anything is built or trained.
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


class Valid:
    """A validity constraint on one value: what may be given at all (a search space is only
    where a search looks). ``describe`` completes "must be ...", e.g. ``"> 0"``."""

    def ok(self, value: Any) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Range(Valid):
    """A finite number in [``low``, ``high``]; ``open_low`` / ``open_high`` exclude the bound,
    ``None`` leaves that side unbounded. NaN and ±inf are never in a range."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def ok(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return not (
            self.high is not None and (value >= self.high if self.open_high else value > self.high)
        )

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
            return f"in {left}{_num(self.low)}, {_num(self.high)}{right}"
        if self.low is not None:
            return f"{'>' if self.open_low else '>='} {_num(self.low)}"
        if self.high is not None:
            return f"{'<' if self.open_high else '<='} {_num(self.high)}"
        return "a finite number"


@dataclass(frozen=True)
class Each(Valid):
    """A list whose every item satisfies ``item`` (and, when given, has ``length`` items)."""

    item: Valid
    length: int | None = None

    def ok(self, value: Any) -> bool:
        if not isinstance(value, list | tuple):
            return False
        if self.length is not None and len(value) != self.length:
            return False
        return all(self.item.ok(v) for v in value)

    def describe(self) -> str:
        n = f"{self.length} " if self.length is not None else ""
        return f"a list of {n}values each {self.item.describe()}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


#: reusable constraints (``HParam(..., valid=POSITIVE)``)
POSITIVE = Range(0, open_low=True)  # > 0, finite
NON_NEGATIVE = Range(0)  # >= 0, finite
AT_LEAST_ONE = Range(1)  # >= 1 (counts, sizes, epochs)
FINITE = Range()  # any finite number
UNIT = Range(0, 1)  # [0, 1] (probabilities, fractions)
SEED = Range(0, 2**32 - 1)  # what numpy and torch both accept as a seed


@dataclass(frozen=True)
class HParam:
    """One declared hyperparameter (or dataset option).

    ``test_time=True`` marks a knob that does not change training (TDE's alpha): changing it
    reuses the cached checkpoint. ``valid`` is the validity constraint (e.g. ``POSITIVE``,
    ``Range(0, 1, open_high=True)``, ``Each(NON_NEGATIVE)``): a value outside it is refused
    before anything runs, whether it comes from ``--set``, a protocol, a grid or a draw.
    ``choices`` is the finite set of admitted values. Neither enters a run id or a record.
    """

    default: Any
    space: Space | None = None
    help: str = ""
    test_time: bool = False
    choices: tuple[Any, ...] | None = None
    valid: Valid | None = field(default=None, compare=False)

    def parse(self, name: str, text: str) -> Any:
        """Parse ``text`` from the command line with the type of the default."""
        value = parse_value(text)
        return self.check(name, value, shown=text.strip())

    def check(self, name: str, value: Any, *, shown: str | None = None) -> Any:
        """``value`` converted to the default's type and checked against ``choices`` and
        ``valid``; a bad one raises a one-line ``BenchError`` naming the setting and the
        value (as typed, ``shown``, when it came from the command line)."""
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
        text = shown if shown is not None else _show(value)
        if isinstance(value, float) and math.isnan(value) and self.valid is None:
            raise BenchError(f"--set {name}={text}: not a number")
        if self.valid is not None and not self.valid.ok(value):
            raise BenchError(f"--set {name}={text}: must be {self.valid.describe()}")
        return value


def _show(value: Any) -> str:
    """A value as the user would type it (``nan``, ``-0.1``, ``[1, 2]``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return json.dumps(value) if isinstance(value, list | bool) else str(value)


def check_seed(seed: Any, what: str = "--seed") -> int:
    """``seed`` as an int in ``SEED``'s range [0, 2**32 - 1] (numpy's and torch's common
    range); anything else raises a one-line ``BenchError`` naming ``what`` and the value."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not SEED.ok(seed):
        raise BenchError(f"{what} {seed}: a seed must be an integer {SEED.describe()}")
    return seed


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
