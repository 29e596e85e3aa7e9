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
