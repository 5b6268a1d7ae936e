"""A bounded atheris run in CI: the corpus plus fresh mutations must not crash."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "unit", "rflib", "corpus")


def test_codec_survives_coverage_guided_fuzzing(tmp_path):
    pytest.importorskip("atheris")
    work = tmp_path / "corpus"
    shutil.copytree(CORPUS, work)  # the fuzzer adds what it finds; keep the repo clean
    r = subprocess.run(
        [
            sys.executable,
            os.path.join(HERE, "fuzz_codec.py"),
            "-runs=300000",
            "-max_len=4096",
            "-timeout=10",
            f"-artifact_prefix={tmp_path}/",  # crash files go here, not into the cwd
            str(work),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    tail = (r.stdout + r.stderr)[-2000:]
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert r.returncode == 0, f"{crashes}: {tail}"
    assert "Done 300000 runs" in tail, tail
