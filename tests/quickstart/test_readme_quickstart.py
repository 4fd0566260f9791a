"""The README's quickstart, run as written: so the README cannot drift from what works.

The blocks marked ``<!-- quickstart: server -->`` and ``<!-- quickstart: client -->`` in
README.md are taken literally and run by bash in the checkout, as a new user would run them in
two terminals: the server block in the background (it builds and installs the release binary,
then serves), the client block once the server listens. What makes it a fresh machine:

- HOME is an empty temp dir (so ``~/.venvs/tora`` is a new venv, pip's cache and the SDK's spool
  are empty); cargo and rustup keep their real homes, so the build reuses the crates on disk;
- the binary is installed into a temp dir (CARGO_INSTALL_ROOT, which cargo honours) put first
  on PATH, never over a ``tora`` of the machine's own;
- ``TORA_BIND`` (a free port) and ``TORA_DB`` (a new file in the temp dir) are the settings
  the README's commands honour; no TORA_* variable of the caller leaks in.

Afterwards the run the example made, and its points, must be on the server.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))

from toraserver import call_ok

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
# The server block builds a release binary first: minutes on a fresh CI machine.
BUILD_TIMEOUT_S = 40 * 60
CLIENT_TIMEOUT_S = 15 * 60


def marked_block(text: str, mark: str) -> str:
    """The ```sh block right after the HTML comment ``<!-- quickstart: MARK ...-->``."""
    found = re.findall(
        r"<!-- quickstart: " + mark + r"\b[^>]*-->\s*\n```sh\n(.*?)```", text, re.DOTALL
    )
    assert len(found) == 1, (
        f"README.md needs exactly one ```sh block marked <!-- quickstart: {mark} -->"
    )
    return found[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_env(tmp: Path, port: int) -> dict[str, str]:
    real_home = Path.home()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TORA_", "PIP_", "VIRTUAL_ENV", "PYTHON"))
    }
    env.setdefault("CARGO_HOME", str(real_home / ".cargo"))
    if (real_home / ".rustup").is_dir():
        env.setdefault("RUSTUP_HOME", str(real_home / ".rustup"))
    home = tmp / "home"
    home.mkdir()
    root = tmp / "cargo-root"
    # A cargo found through PATH via the real ~/.cargo/bin stays found; ours comes first.
    path = env.get("PATH", "")
    path = f"{root / 'bin'}:{path}:{Path(env['CARGO_HOME']) / 'bin'}"
    env.update(
        HOME=str(home),
        CARGO_INSTALL_ROOT=str(root),
        PATH=path,
        TORA_BIND=f"127.0.0.1:{port}",
        TORA_DB=str(tmp / "tora.db"),
    )
    return env


def wait_for_line(
    log: Path, prefix: str, server: subprocess.Popen[bytes], timeout: float
) -> list[str]:
    """The lines of ``log`` up to and after the first starting with ``prefix``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = log.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines):
            if line.startswith(prefix) and len(lines) > i + 2:
                return lines[i:]
        assert server.poll() is None, (
            f"the server block exited ({server.returncode}):\n{log.read_text()}"
        )
        time.sleep(0.5)
    raise AssertionError(f"no {prefix!r} within {timeout} s:\n{log.read_text()}")


def test_the_readme_first_commands_are_the_quickstart_and_ci() -> None:
    text = README.read_text()
    first = re.search(r"```sh\n(.*?)```", text, re.DOTALL)
    assert first is not None
    commands = [line.split("#")[0].strip() for line in first.group(1).splitlines()]
    assert commands == ["./install.sh && tora serve", "./test.sh"], commands
    assert (
        marked_block(text, "server").split("#")[0].strip()
        == "./install.sh && tora serve"
    )
    assert "exec ./test.sh" in (REPO / ".ci" / "run").read_text()
    # The wheel's URL the README shows is the one this SDK version is served at.
    version = re.search(
        r'^version = "([^"]+)"',
        (REPO / "python" / "pyproject.toml").read_text(),
        re.MULTILINE,
    )
    assert version is not None
    # (a placeholder such as tora-VERSION-... is not a version)
    for shown in re.findall(r"/sdk/tora-([0-9][^-]*)-py3-none-any\.whl", text):
        assert shown == version.group(1), (
            f"README shows the SDK wheel {shown}, pyproject says {version.group(1)}"
        )


def test_the_readme_quickstart_logs_a_run_on_a_fresh_machine() -> None:
    text = README.read_text()
    server_block = marked_block(text, "server")
    client_block = marked_block(text, "client")
    with tempfile.TemporaryDirectory(prefix="tora-quickstart-") as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        env = fresh_env(tmp, port)
        log = tmp / "server.log"
        with log.open("wb") as out:
            server = subprocess.Popen(
                ["bash", "-c", server_block],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: bash, cargo, then tora
            )
        try:
            said = wait_for_line(log, "listening on ", server, BUILD_TIMEOUT_S)
            base = f"http://127.0.0.1:{port}"
            assert said[0] == f"listening on {base}", said
            assert said[1] == f"TORA_BASE_URL={base}/api", said
            assert said[2] == f"pip install --index-url {base}/sdk/simple/ tora", said

            key_file = tmp / "key"
            # The block as written, then one line of ours that hands back the key it made.
            script = f'set -eo pipefail\n{client_block}\nprintf %s "$TORA_API_KEY" > {key_file}\n'
            client = subprocess.run(
                ["bash", "-c", script],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=CLIENT_TIMEOUT_S,
                check=False,
            )
            output = f"stdout:\n{client.stdout}\nstderr:\n{client.stderr}\nserver:\n{log.read_text()}"
            assert client.returncode == 0, output
            assert (tmp / "home" / ".venvs" / "tora" / "bin" / "python").exists(), (
                output
            )
            assert "password: " in client.stdout, output
            assert f"{base}/experiments/" in client.stdout + client.stderr, output

            key = key_file.read_text()
            assert key.startswith("tora_sk_"), output
            runs = call_ok("GET", f"{base}/api/experiments", api_key=key)
            assert [r["name"] for r in runs] == ["numpy-logreg"], runs
            summary = call_ok(
                "GET", f"{base}/api/experiments/{runs[0]['id']}/summary", api_key=key
            )
            counts = {m["name"]: m["count"] for m in summary["metrics"]}
            # System metrics are on by default: sampled at least as the run starts.
            assert "sys/memory_percent" in counts, summary
            logged = {n: c for n, c in counts.items() if not n.startswith("sys/")}
            # 20 epochs of 1,600 samples in batches of 64, and one validation point per epoch.
            assert logged == {"train/loss": 500, "val/acc": 20}, summary
            assert {r["name"] for r in summary["results"]} >= {
                "val_acc",
                "weight_norm",
            }, summary
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        assert "stopped cleanly" in log.read_text(), log.read_text()
