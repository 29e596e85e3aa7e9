"""Declared hyperparameters: parsing, validation, seeded draws."""

from __future__ import annotations

import pytest

from benchmark.errors import BenchError, UnknownNameError
from benchmark.hparams import (
    Choice,
    HParam,
    LogUniform,
    parse_assignments,
    random_hparams,
    resolve,
)

DECLARED = {
    "lr": HParam(0.1, LogUniform(1e-3, 1.0)),
    "epochs": HParam(10),
    "milestones": HParam([120, 160]),
    "augment": HParam("none", choices=("none", "flip")),
    "nesterov": HParam(False),
}


def test_values_parse_with_the_default_type() -> None:
    values = resolve(
        DECLARED,
        {"lr": "0.05", "epochs": "3", "milestones": "[1,2]", "nesterov": "true", "augment": "flip"},
        what="m",
    )
    assert values == {
        "lr": 0.05,
        "epochs": 3,
        "milestones": [1, 2],
        "augment": "flip",
        "nesterov": True,
    }
    assert isinstance(values["lr"], float) and isinstance(values["epochs"], int)


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("epochs", "2.5", "expected a int"),
        ("lr", "fast", "expected a float"),
        ("augment", "crop", "choose one of"),
        ("nesterov", "3", "expected a bool"),
    ],
)
def test_bad_values_are_rejected(key: str, value: str, match: str) -> None:
    with pytest.raises(BenchError, match=match):
        resolve(DECLARED, {key: value}, what="m")


def test_undeclared_key_is_rejected_with_suggestion() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'epochs'"):
        resolve(DECLARED, {"epoch": "3"}, what="m")


def test_assignments() -> None:
    assert parse_assignments(["a=1", "dataset.b = x=y"]) == {"a": "1", "dataset.b": "x=y"}
    with pytest.raises(BenchError, match="key=value"):
        parse_assignments(["novalue"])


def test_random_draws_are_seeded_by_name() -> None:
    """Adding a hyperparameter never changes another's draw (DomainBed's seed_hash)."""
    one = {"lr": HParam(0.1, LogUniform(1e-3, 1.0))}
    two = {
        "lr": HParam(0.1, LogUniform(1e-3, 1.0)),
        "wd": HParam(1e-4, LogUniform(1e-6, 1e-2)),
        "act": HParam("relu", Choice(("relu", "gelu"))),
    }
    assert random_hparams(one, 3, "m", "d")["lr"] == random_hparams(two, 3, "m", "d")["lr"]
    assert random_hparams(two, 3, "m", "d") == random_hparams(two, 3, "m", "d")
    assert random_hparams(two, 4, "m", "d")["lr"] != random_hparams(two, 3, "m", "d")["lr"]
    assert random_hparams(two, 0, "m", "d") == {"lr": 0.1, "wd": 1e-4, "act": "relu"}
    assert 1e-3 <= random_hparams(two, 5, "m", "d")["lr"] <= 1.0


# -- validity constraints -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("valid", "good", "bad", "words"),
    [
        ("POSITIVE", [1e-9, 3], [0, -0.1, float("nan"), float("inf")], "> 0"),
        ("NON_NEGATIVE", [0, 2.5], [-1e-9, float("nan")], ">= 0"),
        ("AT_LEAST_ONE", [1, 7], [0, -1], ">= 1"),
        ("UNIT", [0, 0.5, 1], [-0.1, 1.01], "in [0, 1]"),
        ("SEED", [0, 2**32 - 1], [-1, 2**32, 2**64], "in [0, 4294967295]"),
    ],
)
def test_constraints(valid: str, good: list, bad: list, words: str) -> None:
    import benchmark.hparams as hp

    constraint = getattr(hp, valid)
    assert constraint.describe() == words
    assert all(constraint.ok(v) for v in good)
    assert not any(constraint.ok(v) for v in bad)
    assert not constraint.ok(True) and not constraint.ok("1")


def test_open_bounds_and_lists() -> None:
    from benchmark.hparams import NON_NEGATIVE, Each, Range

    momentum = Range(0, 1, open_high=True)
    assert momentum.describe() == "in [0, 1)" and momentum.ok(0) and not momentum.ok(1)
    assert Range(0, 1, open_low=True).describe() == "in (0, 1]"
    three = Each(NON_NEGATIVE, 3)
    assert three.ok([0, 1, 2]) and not three.ok([0, 1]) and not three.ok([0, -1, 2])
    assert "3 values each >= 0" in three.describe()


def test_check_names_the_setting_and_the_range() -> None:
    from benchmark.hparams import POSITIVE

    h = HParam(0.1, valid=POSITIVE)
    with pytest.raises(BenchError, match=r"^--set lr=-0.1: must be > 0$"):
        h.parse("lr", "-0.1")
    with pytest.raises(BenchError, match=r"lr=nan: must be > 0"):
        h.parse("lr", "nan")
    with pytest.raises(BenchError, match="lr=nan"):  # NaN is refused even unconstrained
        HParam(0.1).parse("lr", "nan")
    assert h.parse("lr", "0.5") == 0.5


def test_valid_is_no_part_of_equality_or_records() -> None:
    """Adding a constraint changes no hash, record or run id computed from declarations."""
    from benchmark.hparams import POSITIVE

    assert HParam(0.1, help="x") == HParam(0.1, help="x", valid=POSITIVE)
    assert hash(HParam(0.1, help="x")) == hash(HParam(0.1, help="x", valid=POSITIVE))


def _declarations():
    from benchmark.dataset import DATASETS
    from benchmark.method import METHODS
    from benchmark.plugins import load_plugins

    load_plugins()
    for name, cls in METHODS.items():
        yield f"method {name}", cls.declared(), getattr(cls, "protocol_defaults", {})
    for name, cls in DATASETS.items():
        protocol = cls.protocol if isinstance(cls.protocol, dict) else {}
        yield f"dataset {name}", cls.options, {}
        yield f"dataset {name} protocol", {}, protocol


def test_every_default_protocol_and_search_point_is_valid() -> None:
    """Every built-in declaration is consistent: defaults, the protocols' values and the
    search spaces' grids and draws all pass the declared validity constraints."""
    import numpy as np

    from benchmark.protocols import PROTOCOLS
    from benchmark.training import PROTOCOL

    for name, values in PROTOCOLS.items():
        for key, value in values.items():
            if key in PROTOCOL:
                PROTOCOL[key].check(key, value)
        assert name
    for what, declared, defaults in _declarations():
        for key, h in declared.items():
            h.check(key, h.default)
            if h.space is not None:
                for value in [*h.space.grid(5), h.space.sample(np.random.RandomState(1))]:
                    h.check(key, value)
        for key, value in defaults.items():
            (declared.get(key) or PROTOCOL.get(key) or HParam(value)).check(key, value)
        assert what
    from benchmark.dataset import DATASETS

    for _name, cls in DATASETS.items():  # the tests' tiny options are valid options
        for key, value in getattr(cls, "tiny", {}).items():
            cls.options[key].check(key, value)
    for name, cls in DATASETS.items():  # the dataset protocols, checked against the protocol
        spec = cls.protocol if isinstance(cls.protocol, dict) else PROTOCOLS.get(cls.protocol, {})
        for key, value in spec.items():
            if key in PROTOCOL:
                PROTOCOL[key].check(key, value)
        assert name


def test_shared_settings_are_all_constrained() -> None:
    """Every numeric shared training setting declares its validity range."""
    from benchmark.training import PROTOCOL

    numeric = [k for k, h in PROTOCOL.items() if isinstance(h.default, int | float | list)]
    assert numeric and all(PROTOCOL[k].valid is not None for k in numeric), numeric


def test_every_numeric_declaration_has_a_validity_constraint() -> None:
    """The whole kind: no built-in method hyperparameter or dataset option that takes a
    number (or a list of numbers) is left without a range or a set of choices."""
    from benchmark.hf import HFDataset

    found = [*_declarations(), ("dataset hf:", HFDataset.options, {})]
    missing = [
        f"{what}: {key}"
        for what, declared, _ in found
        for key, h in declared.items()
        if not isinstance(h.default, bool)
        and isinstance(h.default, int | float | list)
        and h.valid is None
        and h.choices is None
    ]
    assert not missing, missing
