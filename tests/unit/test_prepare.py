"""The model cache is shared by every checkout on a machine: what it holds must not depend on one of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers import prepare


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for the installed embedding package (its `model/` directory)."""
    package = tmp_path / "site-packages" / prepare.MINILM_PACKAGE
    (package / "model" / "1_Pooling").mkdir(parents=True)
    (package / "model" / "config.json").write_text("{}")
    (package / "model" / "1_Pooling" / "config.json").write_text("{}")
    monkeypatch.setattr(prepare, "package_dir", lambda name: package)
    return package / "model"


def test_the_embedding_model_is_copied_so_it_outlives_the_checkout_that_prepared_it(tmp_path, shipped):
    cache = tmp_path / "cache"
    cache.mkdir()
    target = prepare.prepare_minilm(cache / "all-minilm-l6-v2")
    assert target.is_dir() and not target.is_symlink()
    (shipped / "config.json").unlink()  # the venv that prepared it goes away
    assert (target / "config.json").read_text() == "{}"
    assert (target / "1_Pooling" / "config.json").exists()


def test_a_link_left_by_an_earlier_version_is_replaced_even_when_it_dangles(tmp_path, shipped):
    cache = tmp_path / "cache"
    cache.mkdir()
    stale = cache / "all-minilm-l6-v2"
    stale.symlink_to(tmp_path / "deleted-clone" / "model", target_is_directory=True)
    target = prepare.prepare_minilm(stale)
    assert not target.is_symlink() and (target / "config.json").exists()
    assert prepare.prepare_minilm(stale) == target  # prepared once: a second call keeps it
    assert sorted(p.name for p in cache.iterdir()) == ["all-minilm-l6-v2"]  # no staging left behind
