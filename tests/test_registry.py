"""The generic registry: registration, collisions, suggestions, listing."""

from __future__ import annotations

import pytest

from benchmark import Method, register_method
from benchmark.errors import DuplicatePluginError, UnknownNameError
from benchmark.method import METHODS
from benchmark.registry import Registry


def test_unknown_name_suggests_closest() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown method 'ermm'; did you mean 'erm'"):
        METHODS.get("ermm")


def test_unknown_name_without_close_match_lists_known() -> None:
    with pytest.raises(UnknownNameError, match=r"known: abn, ala, .*\.\.\."):
        METHODS.get("zzzzzzzz")


def test_names_are_natural_sorted_and_filtered() -> None:
    reg: Registry[int] = Registry("thing")
    for name in ("net10", "net2", "net1", "other"):
        reg.register(name)(object())
    assert reg.names() == ["net1", "net2", "net10", "other"]
    assert reg.names("net*", exclude="net1") == ["net2", "net10"]


def test_base_class_is_checked() -> None:
    with METHODS.isolated(), pytest.raises(TypeError, match="must subclass Method"):

        @register_method("not-a-method")
        class NotAMethod:
            pass


def test_bad_name_rejected() -> None:
    with pytest.raises(ValueError, match="kebab-case"):
        register_method("Bad_Name")


def test_duplicate_names_both_files(tmp_path) -> None:
    from benchmark.plugins import load_file

    for i in (1, 2):
        (tmp_path / f"dup{i}.py").write_text(
            "from benchmark import Method, register_method\n"
            "@register_method('dup-method')\n"
            f"class Dup{i}(Method):\n    pass\n"
        )
    with METHODS.isolated():
        load_file(tmp_path / "dup1.py")
        with pytest.raises(DuplicatePluginError) as info:
            load_file(tmp_path / "dup2.py")
    message = str(info.value)
    assert "dup-method" in message and "dup1.py" in message and "dup2.py" in message


def test_listed_names_equal_registered_classes() -> None:
    """The decorator is the single source of truth: each entry's class knows its name."""
    for name, cls in METHODS.items():
        assert cls.name == name
        assert issubclass(cls, Method)
