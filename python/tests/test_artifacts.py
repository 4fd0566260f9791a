"""Artifacts: files kept with a run. log_artifact() returns at once and never raises for the
network; the file goes up in the background, streamed, and survives an outage (uploaded when the
server is back, or by ``python -m tora sync``). list_artifacts() and download_artifact() read it back.

The tests marked ``needs_server_artifacts`` talk to the real binary's artifact API."""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ToraServer, run_python, sync

import tora
from tora import Tora, ToraExperimentError, ToraValidationError

SAFETY = 60
FAKE_KEY = "tora_sk_" + "a" * 40


@pytest.fixture(autouse=True)
def no_global_client() -> Iterator[None]:
    yield
    tora.shutdown()


def artifact_dirs(cache: Path) -> list[Path]:
    root = cache / "spool" / "artifacts"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def records(directory: Path) -> list[dict[str, object]]:
    found = sorted((p for p in directory.glob("*.json") if p.stem.isdigit()), key=lambda p: int(p.stem))
    return [json.loads(p.read_text()) for p in found]


def random_file(path: Path, size: int, seed: int = 1) -> bytes:
    """Bytes that do not compress and are not all alike, so a truncation or a mix-up shows."""
    block = hashlib.sha256(str(seed).encode()).digest()
    out = bytearray()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    data = bytes(out[:size])
    path.write_bytes(data)
    return data


# ---------- the caller's mistakes raise at once; nothing else does ----------


def test_a_missing_file_or_a_bad_name_is_refused_at_call_time(tmp_path: Path) -> None:
    t = Tora.create_experiment("mistakes", mode="offline")
    with pytest.raises(ToraValidationError, match="no such file"):
        t.log_artifact(tmp_path / "nope.txt")
    with pytest.raises(ToraValidationError, match="not a regular file"):
        t.log_artifact(tmp_path)
    good = tmp_path / "ok.txt"
    good.write_text("ok")
    for bad in ("../escape.txt", "a//b.txt", "/abs.txt", "./x", "a\\b", "tab\there", "x" * 1025, "a\x85b", "  "):
        with pytest.raises(ToraValidationError):
            t.log_artifact(good, name=bad)
    t.log_artifact(good, name="nested/dir/ok.txt")  # folders are fine
    t.shutdown()
    with pytest.raises(tora.ToraMetricError):
        t.log_artifact(good)


def test_a_small_file_is_copied_when_logged_so_later_changes_do_not_matter(tmp_path: Path, sdk_env: Path) -> None:
    plot = tmp_path / "plot.png"
    plot.write_bytes(b"\x89PNG first version")
    t = Tora.create_experiment("copy-now", mode="offline")
    t.log_artifact(plot, name="plots/loss.png")
    plot.write_bytes(b"overwritten by the next epoch")
    plot.unlink()  # a plot saved in a temporary directory that is then removed
    t.shutdown()

    [directory] = artifact_dirs(sdk_env)
    [record] = records(directory)
    assert record["name"] == "plots/loss.png"
    assert record["copy"] == "1.data"
    assert (directory / "1.data").read_bytes() == b"\x89PNG first version"
    header = json.loads((directory / "header.json").read_text())
    assert header["experiment_id"] == t.experiment_id
    assert header["create"]["name"] == "copy-now"  # so sync can create the run first


def test_a_file_over_the_copy_limit_is_recorded_by_reference(
    tmp_path: Path, sdk_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORA_ARTIFACT_COPY_MAX", "1000")
    checkpoint = tmp_path / "model.ckpt"
    random_file(checkpoint, 5000)
    t = Tora.create_experiment("by-reference", mode="offline")
    t.log_artifact(checkpoint)
    t.shutdown()
    [directory] = artifact_dirs(sdk_env)
    [record] = records(directory)
    assert record == {
        "name": "model.ckpt",
        "source": str(checkpoint.resolve()),
        "size": 5000,
        "mtime_ns": checkpoint.stat().st_mtime_ns,
        "copy": None,
    }
    assert not list(directory.glob("*.data"))


def test_log_artifact_returns_at_once_while_the_server_is_away(sdk_env: Path, tmp_path: Path) -> None:
    """Nothing listens at TORA_BASE_URL: the run starts anyway, and the artifact waits on disk."""
    data = random_file(tmp_path / "config.yaml", 2000)
    t = Tora.create_experiment("away", api_key=FAKE_KEY)
    t.log_artifact(tmp_path / "config.yaml")
    assert t.pending_artifacts == 1
    t.shutdown(timeout=0.5)
    [directory] = artifact_dirs(sdk_env)
    [record] = records(directory)
    assert (directory / str(record["copy"])).read_bytes() == data


# ---------- against the server ----------


def test_upload_list_and_download_give_back_the_same_bytes(server: ToraServer, tmp_path: Path, sdk_env: Path) -> None:
    small = tmp_path / "metrics.json"
    small.write_text('{"accuracy": 0.93}')
    big = random_file(tmp_path / "weights.bin", 3 * 1024 * 1024 + 17)  # several blocks, not a multiple of one
    t = Tora.create_experiment("artifacts")
    t.log_artifact(small)
    t.log_artifact(tmp_path / "weights.bin", name="model/weights.bin")
    assert t.flush() == 0
    assert t.pending_artifacts == 0

    listed = {a["path"]: a for a in t.list_artifacts()}
    assert set(listed) == {"metrics.json", "model/weights.bin"}
    assert listed["model/weights.bin"]["size"] == len(big)
    assert listed["model/weights.bin"]["sha256"] == hashlib.sha256(big).hexdigest()
    assert listed["metrics.json"]["size"] == small.stat().st_size

    out = tmp_path / "out"
    out.mkdir()
    assert t.download_artifact("model/weights.bin", out).read_bytes() == big
    assert t.download_artifact("metrics.json", out / "m.json").read_bytes() == small.read_bytes()
    with pytest.raises(ToraExperimentError):
        t.download_artifact("missing.txt", out)
    assert not (out / "missing.txt").exists()
    assert not (out / "missing.txt.part").exists()
    t.shutdown()
    assert artifact_dirs(sdk_env) == []  # nothing left behind once uploaded


def test_the_module_functions_log_list_and_download(server: ToraServer, tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# Run notes\n")
    tora.setup("global-artifacts")
    tora.log_artifact(notes)
    tora.log_artifact(notes, name="notes.md")  # the same name again replaces it
    assert tora.flush() == 0
    assert [a["path"] for a in tora.list_artifacts()] == ["notes.md"]
    assert tora.download_artifact("notes.md", tmp_path / "back.md").read_text() == "# Run notes\n"


def test_upload_and_download_stream_instead_of_holding_the_file(
    server: ToraServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORA_ARTIFACT_COPY_MAX", "0")  # read at upload time, from the caller's file
    size = 48 * 1024 * 1024
    data = random_file(tmp_path / "big.ckpt", size)
    digest = hashlib.sha256(data).hexdigest()
    del data
    t = Tora.create_experiment("streamed")
    tracemalloc.start()
    try:
        t.log_artifact(tmp_path / "big.ckpt")
        assert t.flush(timeout=SAFETY) == 0
        t.download_artifact("big.ckpt", tmp_path / "back.ckpt")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"peak Python allocation {peak} bytes for a {size}-byte file"
    back = hashlib.sha256()
    with (tmp_path / "back.ckpt").open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            back.update(block)
    assert back.hexdigest() == digest
    t.shutdown()


def test_an_artifact_logged_during_an_outage_arrives_when_the_server_is_back(
    lone_server: ToraServer, tmp_path: Path
) -> None:
    data = random_file(tmp_path / "during.bin", 300_000)
    t = Tora.create_experiment("outage-artifact")
    lone_server.kill()
    done = threading.Event()

    def log() -> None:
        t.log_artifact(tmp_path / "during.bin")
        done.set()

    threading.Thread(target=log).start()
    assert done.wait(SAFETY)  # returned without the server
    # flush() gives up on the first failed attempt, as it does for points, instead of the whole timeout.
    returned = threading.Event()
    threading.Thread(target=lambda: (t.flush(timeout=SAFETY), returned.set())).start()
    assert returned.wait(SAFETY / 2)
    assert t.pending_artifacts == 1
    lone_server.start()
    assert t.flush(timeout=SAFETY) == 0
    assert t.pending_artifacts == 0
    assert t.download_artifact("during.bin", tmp_path / "back.bin").read_bytes() == data
    t.shutdown()


def test_sync_uploads_the_artifacts_an_outage_left(lone_server: ToraServer, tmp_path: Path, sdk_env: Path) -> None:
    data = random_file(tmp_path / "left.bin", 100_000)
    t = Tora.create_experiment("left-behind")
    lone_server.kill()
    t.log_artifact(tmp_path / "left.bin", name="kept/left.bin")
    t.shutdown(timeout=0.5)
    assert len(artifact_dirs(sdk_env)) == 1

    lone_server.start()
    done = sync()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "uploaded 1 artifacts" in done.stdout
    assert artifact_dirs(sdk_env) == []
    back = Tora.load_experiment(t.experiment_id)
    assert back.download_artifact("kept/left.bin", tmp_path / "b.bin").read_bytes() == data
    back.shutdown()


def test_an_offline_run_and_its_artifacts_arrive_with_sync(server: ToraServer, tmp_path: Path, sdk_env: Path) -> None:
    (tmp_path / "cfg.json").write_text('{"lr": 0.1}')
    t = Tora.create_experiment("offline-artifacts", mode="offline")
    t.metric("loss", 0.5, 1)
    t.log_artifact(tmp_path / "cfg.json")
    t.shutdown()
    done = sync()
    assert done.returncode == 0, done.stdout + done.stderr
    back = Tora.load_experiment(t.experiment_id)
    assert [a["path"] for a in back.list_artifacts()] == ["cfg.json"]
    back.shutdown()


def test_a_forked_child_does_not_upload_the_parents_artifacts(server: ToraServer, tmp_path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork here")
    (tmp_path / "a.txt").write_text("parent")
    t = Tora.create_experiment("fork-artifacts")
    t.log_artifact(tmp_path / "a.txt")
    pid = os.fork()
    if pid == 0:  # the child: its copy of the uploader is empty, and closing it touches nothing
        os._exit(0 if t.pending_artifacts == 0 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert t.flush() == 0
    assert [a["path"] for a in t.list_artifacts()] == ["a.txt"]
    t.shutdown()


def test_a_large_file_is_read_when_uploaded_and_one_that_is_gone_is_dropped(
    server: ToraServer, tmp_path: Path, sdk_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORA_ARTIFACT_COPY_MAX", "10")
    (tmp_path / "ckpt.pt").write_bytes(b"epoch 1 weights")
    (tmp_path / "tmp.pt").write_bytes(b"deleted before upload")
    t = Tora.create_experiment("by-reference-sync", mode="offline")
    t.log_artifact(tmp_path / "ckpt.pt")
    t.log_artifact(tmp_path / "tmp.pt")
    t.shutdown()
    (tmp_path / "ckpt.pt").write_bytes(b"epoch 2 weights, overwritten in place")
    (tmp_path / "tmp.pt").unlink()

    done = sync()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "artifact 'tmp.pt' dropped" in done.stdout
    assert artifact_dirs(sdk_env) == []
    back = Tora.load_experiment(t.experiment_id)
    assert [a["path"] for a in back.list_artifacts()] == ["ckpt.pt"]
    got = back.download_artifact("ckpt.pt", tmp_path / "got.pt").read_bytes()
    assert got == b"epoch 2 weights, overwritten in place"  # as it was when uploaded: documented
    back.shutdown()


def test_a_script_that_just_ends_still_uploads_its_artifact(server: ToraServer, tmp_path: Path, sdk_env: Path) -> None:
    """No flush, no shutdown: the atexit hook uploads the file before the run is marked finished."""
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, tempfile, pathlib, tora
            print(tora.setup("atexit-artifact"), flush=True)
            with tempfile.TemporaryDirectory() as d:
                plot = pathlib.Path(d) / "plot.svg"
                plot.write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
                tora.log_artifact(plot, name="plots/final.svg")
            # the temporary directory is gone: the copy made at call time is what is uploaded
            """
        )
    )
    done = run_python([str(script)])
    assert done.returncode == 0, done.stderr
    experiment_id = done.stdout.splitlines()[-1]
    [artifact] = server.get(f"/experiments/{experiment_id}/artifacts")
    assert artifact["path"] == "plots/final.svg"
    assert artifact["size"] == len("<svg xmlns='http://www.w3.org/2000/svg'/>")
    assert server.get(f"/experiments/{experiment_id}")["state"] == "finished"
    assert artifact_dirs(sdk_env) == []
