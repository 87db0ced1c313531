import os
from pathlib import Path

import pytest

from calibkit.data import sources as S


@pytest.fixture(autouse=True)
def _no_data_dir(monkeypatch):
    """Tests see only the embedded assets unless they ask for the local data directory."""
    monkeypatch.delenv("CALIBKIT_DATA_DIR", raising=False)
    S.clear_cache()
    yield
    S.clear_cache()


@pytest.fixture
def shared_data_dir(monkeypatch):
    """The study's local data copies (../shared/data here), through the data-directory setting."""
    path = os.environ.get("CALIBKIT_TEST_DATA_DIR") or str(Path(__file__).resolve().parents[2] / "shared" / "data")
    if not Path(path, "MANIFEST.md").is_file():
        pytest.skip(f"no local data directory at {path} (set CALIBKIT_TEST_DATA_DIR)")
    monkeypatch.setenv("CALIBKIT_DATA_DIR", path)
    S.clear_cache()
    return Path(path)


@pytest.fixture(scope="session")
def tokenizer():
    from calibkit.models import load_tokenizer

    return load_tokenizer("smollm2-135m")
