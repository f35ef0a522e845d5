"""marabook.config: the scale switch."""

import pytest

from marabook import config


def test_default_is_book(monkeypatch):
    monkeypatch.delenv("MARABOOK_SMOKE", raising=False)
    monkeypatch.delenv("MARABOOK_SCALE", raising=False)
    assert config.scale() == "book" and not config.is_smoke()
    assert config.pick(smoke=1, book=2, gpu=3) == 2


def test_smoke_wins(monkeypatch):
    monkeypatch.setenv("MARABOOK_SMOKE", "1")
    monkeypatch.setenv("MARABOOK_SCALE", "gpu")
    assert config.scale() == "smoke" and config.is_smoke()
    assert config.pick(smoke=1, book=2, gpu=3) == 1


def test_gpu_scale_and_fallback(monkeypatch):
    monkeypatch.setenv("MARABOOK_SMOKE", "0")
    monkeypatch.setenv("MARABOOK_SCALE", "gpu")
    assert config.pick(smoke=1, book=2, gpu=3) == 3
    assert config.pick(smoke=1, book=2) == 2


@pytest.mark.parametrize("var,value", [("MARABOOK_SMOKE", "maybe"), ("MARABOOK_SCALE", "huge")])
def test_typos_are_errors(monkeypatch, var, value):
    monkeypatch.delenv("MARABOOK_SMOKE", raising=False)
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError, match=var):
        config.scale()
