"""What a run records about where it ran: sent once, as the experiment's ``metadata``, at create.

Never environment variables (they hold secrets). The command line is sent with the values of
options that look secret (``--api-key X``, ``--password=X``, ...) and the API key itself
replaced by ``REDACTED``. Everything here is best effort: a part that cannot be read is left out,
and nothing raises.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import socket
import subprocess
import sys
from typing import Any

MAX_BYTES = 16 * 1024
"""The server's bound on an experiment's metadata, serialized."""
MAX_COMMAND = 4000
"""Characters of the command line kept (the rest is cut, with an ellipsis)."""
GIT_TIMEOUT = 2.0

PACKAGES = ("torch", "numpy", "jax", "tensorflow", "sklearn", "transformers", "lightning", "pytorch_lightning")
"""Packages whose version is recorded, when the run has already imported them."""

_SECRET_OPTION = re.compile(r"^-{1,2}[\w.-]*(key|token|secret|passw(or)?d|credential)[\w.-]*$", re.IGNORECASE)
_KEY_RE = re.compile(r"tora_sk_[A-Za-z0-9]*")
_REDACTED = "REDACTED"


def collect(version: str, api_key: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    git = _git()
    if git:
        metadata["git"] = git
    argv = getattr(sys, "argv", None)  # absent in an embedded interpreter
    if isinstance(argv, list) and argv:
        metadata["command"] = command(argv, api_key)
    for name, read in (("host", socket.gethostname), ("python", platform.python_version), ("platform", _platform)):
        try:
            metadata[name] = read()
        except Exception:  # noqa: S112 (a part that cannot be read is left out)
            continue
    metadata["sdk"] = f"tora {version}"
    packages = {}
    for name in PACKAGES:
        module = sys.modules.get(name)
        found = getattr(module, "__version__", None) if module is not None else None
        if isinstance(found, str):
            packages[name] = found[:50]
    if packages:
        metadata["packages"] = packages
    if len(json.dumps(metadata)) > MAX_BYTES:  # only a pathological command line gets here
        metadata.pop("command", None)
    return metadata


def command(argv: list[str], api_key: str | None) -> str:
    """The command line as a shell would take it, secrets replaced, cut to MAX_COMMAND characters."""
    words: list[str] = []
    hide_next = False
    for raw in argv:
        word = str(raw)
        if hide_next:
            word, hide_next = _REDACTED, False
        elif (api_key and api_key in word) or _KEY_RE.search(word):
            word = _KEY_RE.sub(_REDACTED, word.replace(api_key, _REDACTED) if api_key else word)
        elif word.startswith("-"):
            option, equals, _ = word.partition("=")
            if _SECRET_OPTION.match(option):
                if equals:
                    word = f"{option}={_REDACTED}"
                else:
                    hide_next = True
        words.append(word)
    text = shlex.join(words)
    return text if len(text) <= MAX_COMMAND else text[: MAX_COMMAND - 1] + "…"


def _platform() -> str:
    return platform.platform(terse=True)


def _git() -> dict[str, Any] | None:
    """Commit, branch and dirty flag of the working directory's repository; None outside one."""
    try:
        done = subprocess.run(
            ["git", "status", "--porcelain=v2", "--branch", "--untracked-files=no"],  # noqa: S607 (git from PATH)
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=GIT_TIMEOUT,
            check=False,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    git: dict[str, Any] = {}
    dirty = False
    for line in done.stdout.decode("utf-8", errors="replace").splitlines():
        if line.startswith("# branch.oid "):
            commit = line[len("# branch.oid ") :].strip()
            if commit != "(initial)":
                git["commit"] = commit
        elif line.startswith("# branch.head "):
            branch = line[len("# branch.head ") :].strip()
            if branch != "(detached)":
                git["branch"] = branch[:255]
        elif line and not line.startswith("#"):
            dirty = True
    if not git:
        return None
    git["dirty"] = dirty
    return git
