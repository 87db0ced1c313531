import json

from calibkit import environment as E


def test_describe_names_packages_cpu_kernels_and_threads():
    d = E.describe()
    assert d["packages"]["key"]["torch"] and d["packages"]["count"] > 50 and len(d["packages"]["sha256"]) == 64
    assert d["torch"]["threads"] >= 1 and d["torch"]["cpu_capability"] and "blas" in d["torch"]
    assert d["cpu"]["cores"] >= 1
    json.dumps(d)  # goes into JSON records as it is


def test_lock_deviations_are_listed(tmp_path):
    have = E.installed()
    name, version = next((k, v) for k, v in have.items() if k not in ("calibkit",))
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"# a comment\n{name}=={version}\nno-such-package==1.0\n{'numpy'}==0.0.1 ; python_version>'3'\n")
    assert E.locked(lock) == {name: version, "no-such-package": "1.0", "numpy": "0.0.1"}
    dev = E.packages(lock)["lock_deviations"]
    assert name not in dev
    assert dev["no-such-package"] == {"installed": None, "locked": "1.0"}
    assert dev["numpy"]["locked"] == "0.0.1" and dev["numpy"]["installed"] == have["numpy"]


def test_the_project_environment_follows_its_lock():
    """`make setup` installs through requirements.lock: the test environment must not deviate from it."""
    assert E.LOCK_FILE.is_file()
    assert E.packages()["lock_deviations"] == {}


def test_diff_names_what_differs():
    a = {"torch": {"threads": 2, "blas": "mkl"}, "python": "3.11"}
    b = {"torch": {"threads": 1, "blas": "mkl"}, "python": "3.11"}
    assert E.diff(a, b) == {"torch.threads": (2, 1)}


def test_prune_report_records_the_environment(tmp_path):
    from calibkit.models import load_model
    from calibkit.prune import prune

    model, _ = load_model("tiny-llama")
    rep = prune(model, None, "magnitude", "0.5", progress=False)
    assert rep.environment["torch"]["threads"] >= 1 and rep.to_dict()["environment"]["packages"]["sha256"]
