"""The carry for a GPU machine with no package registry (bench/gpu_serve_carry.sh here, bench/gpu_serve.sh
there), run offline on a CPU with two small wheels: cut into parts, checked, put together, installed and
imported; a damaged part is refused before anything is installed."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("zstd") is None, reason="needs the zstd command")


def _wheel(folder: Path, name: str, payload: bytes) -> None:
    """A minimal pure-Python wheel; the payload makes it big enough to need several parts."""
    dist = f"{name}-1.0.dist-info"
    with zipfile.ZipFile(folder / f"{name}-1.0-py3-none-any.whl", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{name}/__init__.py", f"VALUE = {name!r}\nBLOB = {payload!r}\n")
        z.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        z.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{dist}/RECORD", "")


def _run(script: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "bench" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def carry(tmp_path):
    c = tmp_path / "carry"
    for s in ("train", "serve"):
        (c / "dl" / s).mkdir(parents=True)
    _wheel(c / "dl" / "train", "carrytrainmod", os.urandom(20_000))   # random bytes: zstd cannot shrink them
    _wheel(c / "dl" / "serve", "carryservemod", b"x" * 5_000)
    env = {**os.environ, "CARRY_DIR": str(c), "OFFLINE": "1", "PART": "8K", "GPU_DIR": str(tmp_path / "gpu"),
           "OUT": str(tmp_path / "out")}
    r = _run("gpu_serve_carry.sh", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return c, env, tmp_path, r.stdout


def test_the_sets_are_cut_into_parts_with_their_checksums_and_a_plan_of_calls(carry):
    c, _, _, out = carry
    train = sorted(p.name for p in (c / "parts").glob("train.[0-9]*"))
    assert len(train) >= 3 and all((c / "parts" / p).stat().st_size <= 8 * 1024 for p in train)
    sums = (c / "sets.txt").read_text().split("\n")
    assert {line.split()[1] for line in sums if line} == {f"parts/{p.name}" for p in (c / "parts").glob("*.[0-9]*")}
    # every part goes in exactly one call, the train set's before the serve set's, the smallest with the probe
    calls = [line.split()[1:] for line in out.splitlines() if line.startswith("[carry] ") and " with " in line]
    sent = [Path(w).name for _, _, *what in calls for w in what if ".0" in Path(w).name or ".1" in Path(w).name]
    assert sorted(sent) == sorted(p.name for p in (c / "parts").glob("*.[0-9]*")) and len(set(sent)) == len(sent)
    assert [k for k, *_ in calls][0] == "probe" and [k for k, *_ in calls][-1] == "serve"
    smallest = min((c / "parts").glob("train.[0-9]*"), key=lambda p: p.stat().st_size).name
    assert any(Path(w).name == smallest for w in calls[0][2:])
    assert max(i for i, n in enumerate(sent) if n.startswith("train")) < min(i for i, n in enumerate(sent) if n.startswith("serve"))


def test_parts_put_together_install_and_import_there(carry):
    c, env, tmp, _ = carry
    r = _run("gpu_serve.sh", "unpack", "train", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    site = tmp / "gpu" / "train"
    out = subprocess.run([sys.executable, "-c", "import carrytrainmod; print(carrytrainmod.VALUE)"],
                         env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True)
    assert out.stdout.strip() == "carrytrainmod"
    assert not (site / "carryservemod").exists()  # one set at a time


def test_a_damaged_part_is_refused_before_anything_is_installed(carry):
    c, env, tmp, _ = carry
    part = sorted((c / "parts").glob("train.[0-9]*"))[1]
    part.write_bytes(part.read_bytes()[:-10] + b"0123456789")
    r = _run("gpu_serve.sh", "unpack", "train", env=env)
    assert r.returncode != 0
    assert "parts of train missing or damaged" in r.stdout
    assert not (tmp / "gpu" / "train").exists()
