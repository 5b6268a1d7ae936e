"""The package an operator installs: its wheel, its metadata, and a fresh install that runs.

The wheel is built from a copy of the checkout (``python -m build --no-isolation``: the
venv's setuptools, nothing downloaded) and installed into a scratch venv made like an
operator's (``--system-site-packages``, where Debian's Mininet lives). Its dependencies
come, offline, from the venv running this test (a ``.pth`` line), so the install takes
seconds and the scratch venv imports routeflow from the wheel, not from this checkout.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "src" / "routeflow" / "web" / "static"
DISSECTOR = ROOT / "tools" / "wireshark" / "rfprotocol.lua"
SKIP_COPY = shutil.ignore_patterns(
    ".git", ".venv*", "run", "build", "dist", "*.egg-info", "node_modules", "__pycache__",
    ".*_cache", ".hypothesis",
)  # fmt: skip

packaging_requirements = pytest.importorskip("packaging.requirements")


def _pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


def _pins(path: Path) -> dict[str, str]:
    """requirements.txt as {canonical name: version}."""
    from packaging.utils import canonicalize_name

    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    return pins


def test_requirements_lock_satisfies_the_declared_ranges():
    """requirements.txt (what the suite runs) lies inside pyproject's ranges, all of them."""
    from packaging.utils import canonicalize_name

    project = _pyproject()["project"]
    pins = _pins(ROOT / "requirements.txt") | _pins(ROOT / "requirements-tempest.txt")
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    assert {"test", "lint", "fuzz", "profiling", "tempest"} <= set(project["optional-dependencies"])
    for text in declared:
        req = packaging_requirements.Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is declared but not pinned in requirements*.txt"
        assert req.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {text}"
    for text in project["dependencies"]:
        assert packaging_requirements.Requirement(text).specifier, f"{text}: no range"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("build", reason="`build` is pinned in requirements.txt")
    work = tmp_path_factory.mktemp("pkg")
    tree = work / "routeflow"
    shutil.copytree(ROOT, tree, ignore=SKIP_COPY)
    r = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(work / "dist"), tree],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (found,) = (work / "dist").glob("routeflow-*.whl")
    assert list((work / "dist").glob("routeflow-*.tar.gz")), "no sdist"
    return found


def test_wheel_holds_the_page_the_dissector_and_the_metadata(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        dist = "-".join(wheel.name.split("-")[:2])  # routeflow-VERSION
        data = f"{dist}.data/data/share/routeflow"
        for path in STATIC.rglob("*"):  # the page, and cytoscape once setup.sh web vendored it
            if path.is_file():
                arc = "routeflow/web/" + path.relative_to(STATIC.parent).as_posix()
                assert z.read(arc) == path.read_bytes(), arc
        assert {"routeflow/web/static/index.html", "routeflow/web/static/app.js"} <= names
        assert z.read(f"{data}/wireshark/rfprotocol.lua") == DISSECTOR.read_bytes()
        assert f"{data}/etc/server.yaml" in names
        assert f"{data}/systemd/routeflow-server.service" in names
        tops = {n.split("/")[0] for n in names}
        assert tops == {"routeflow", f"{dist}.dist-info", f"{dist}.data"}, "only routeflow"
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = Parser().parsestr(z.read(meta_name).decode())
        entry_points = z.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    assert "routeflow = routeflow.cli:main" in entry_points
    requires = [packaging_requirements.Requirement(r) for r in meta.get_all("Requires-Dist")]
    project = _pyproject()["project"]
    runtime = {str(r) for r in requires if r.marker is None}
    assert runtime == {str(packaging_requirements.Requirement(d)) for d in project["dependencies"]}
    for extra, wanted in project["optional-dependencies"].items():
        got = {
            str(r).split(";")[0]
            for r in requires
            if r.marker and r.marker.evaluate({"extra": extra})
        }
        assert got == {str(packaging_requirements.Requirement(d)) for d in wanted}, extra
    assert set(meta.get_all("Provides-Extra")) == set(project["optional-dependencies"])
    assert meta["Requires-Python"] == project["requires-python"]


def test_wheel_installs_into_a_fresh_venv_and_runs(wheel, tmp_path):
    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run(
        [base, "-m", "venv", "--system-site-packages", "--without-pip", venv], check=True
    )
    py = venv / "bin" / "python"
    (purelib,) = (venv / "lib").glob("python3*/site-packages")
    # The dependencies, offline: the site-packages of the venv running this test.
    ours = [p for p in site.getsitepackages() if p.startswith(sys.prefix)]
    (purelib / "routeflow-test-deps.pth").write_text("\n".join(ours) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    r = subprocess.run(
        [sys.executable, "-m", "pip", "--python", py, "install", "--quiet", "--no-deps",
         "--no-index", "--no-compile", "--disable-pip-version-check", wheel],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr

    def run(*argv: str) -> str:
        r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
        assert r.returncode == 0, f"{argv}: {r.stdout}{r.stderr}"
        return r.stdout

    where = run(str(py), "-c", "import routeflow; print(routeflow.__file__)")
    assert where.startswith(str(venv)), f"routeflow imported from {where}, not the wheel"
    routeflow = str(venv / "bin" / "routeflow")
    assert "lab" in run(routeflow, "--help") and "config" in run(routeflow, "--help")
    assert "--config-file" in run(routeflow, "server", "--help")
    assert "`mapping`" in run(routeflow, "config", "reference", "server")
    assert (venv / "share" / "routeflow" / "wireshark" / "rfprotocol.lua").is_file()
    sample = venv / "share" / "routeflow" / "etc" / "server.yaml"
    assert "ok" in run(routeflow, "config", "check", "server", str(sample))
