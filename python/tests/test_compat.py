"""The same script against this SDK and the published 0.0.12 stores the same data.

TORA_COMPAT_PYTHON names an interpreter with ``tora==0.0.12`` installed (e.g. a venv made by
the test command). The test fails, not skips, without it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ToraServer, points, run_python

SCRIPT = Path(__file__).with_name("compat_script.py")


def run(server: ToraServer, python: str) -> dict[str, str]:
    done = run_python([str(SCRIPT)], python=python, cwd=SCRIPT.parent.parent)
    assert done.returncode == 0, f"{python}:\n{done.stdout}\n{done.stderr}"
    ids: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return ids


def stored(server: ToraServer, experiment_id: str) -> dict[str, Any]:
    experiment = server.get(f"/experiments/{experiment_id}")
    return {
        "name": experiment["name"],
        "description": experiment["description"],
        "hyperparams": sorted((h["key"], h["value"]) for h in experiment["hyperparams"]),
        "tags": experiment["tags"],
        "metrics": points(server.metrics(experiment_id)),
        "results": points(server.results(experiment_id)),
    }


def test_same_script_same_stored_data_as_0_0_12(server: ToraServer) -> None:
    compat_python = os.environ.get("TORA_COMPAT_PYTHON")
    if not compat_python:
        pytest.fail("TORA_COMPAT_PYTHON is not set: point it at a python with tora==0.0.12 installed")
    check = run_python(["-c", "import tora; print(tora.__version__)"], python=compat_python, cwd=Path("/"))
    assert check.stdout.strip() == "0.0.12", f"{compat_python} has tora {check.stdout.strip()!r}: {check.stderr}"

    ours = run(server, sys.executable)
    theirs = run(server, compat_python)
    assert ours.keys() == theirs.keys()
    for style in ours:
        mine, published = stored(server, ours[style]), stored(server, theirs[style])
        assert mine["metrics"], style
        assert mine == published, style
