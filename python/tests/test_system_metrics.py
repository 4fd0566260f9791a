"""System metrics: a run logs what the machine does (sys/ metrics) from a daemon thread, at whole
seconds since it started, unless told not to; a source that fails is named once and dropped, and
nothing of it ever reaches the training loop."""

from __future__ import annotations

import logging
import os
import stat
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pynvml  # nvidia-ml-py, the real package (test.sh installs it)
import pytest
from conftest import ToraServer, run_python, spool_files, sync

import tora
from tora import Tora, _config, _system

HOST = (
    "sys/cpu_percent",
    "sys/process_cpu_percent",
    "sys/memory_percent",
    "sys/memory_used_gb",
    "sys/process_rss_mb",
    "sys/disk_read_mb",
    "sys/disk_write_mb",
    "sys/net_recv_mb",
    "sys/net_sent_mb",
)
GPU_FIELDS = ("utilization", "memory_percent", "memory_used_gb", "temperature_c", "power_w")

# What `nvidia-smi --query-gpu=index,utilization.gpu,memory.used,memory.total,temperature.gpu,
# power.draw --format=csv,noheader,nounits` prints on a host with two A100-SXM4-40GB, one training.
TWO_A100 = "0, 97, 31457, 40960, 63, 312.45\n1, 0, 4, 40960, 31, 54.12\n"


@pytest.fixture(autouse=True)
def each_second(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TORA_SYSTEM_METRICS", "1")
    monkeypatch.setenv("TORA_SYSTEM_METRICS_INTERVAL", "1")
    yield
    tora.shutdown()


@pytest.fixture
def no_gpu_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    """No pynvml to import (as when nvidia-ml-py is not installed) and no nvidia-smi on PATH."""
    monkeypatch.setitem(sys.modules, "pynvml", None)
    kept = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "nvidia-smi").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(kept))


def fake_nvidia_smi(directory: Path, monkeypatch: pytest.MonkeyPatch, body: str, *, pynvml: bool = False) -> Path:
    """An `nvidia-smi` first on PATH (a stand-in for NVIDIA's tool, which this machine lacks): it
    answers only the query the SDK should send, as the real one refuses a malformed query, and
    counts its calls in ``calls``."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "nvidia-smi"
    query = "--query-gpu=index,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw"
    script.write_text(
        "#!/bin/sh\n"
        f'echo x >> "{directory}/calls"\n'
        f'if [ "$1" != "{query}" ] || [ "$2" != "--format=csv,noheader,nounits" ] || [ $# -ne 2 ]; then\n'
        '  echo "Invalid combination of input arguments." >&2; exit 2\nfi\n'
        f'n=$(wc -l < "{directory}/calls")\n' + body
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ.get('PATH', '')}")
    if not pynvml:
        monkeypatch.setitem(sys.modules, "pynvml", None)
    return directory / "calls"


def system_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "tora-system"]


def series(server: ToraServer, experiment_id: str) -> dict[str, list[dict[str, Any]]]:
    """The run's metric rows by name, each name's rows by step."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in server.metrics(experiment_id):
        out.setdefault(row["name"], []).append(row)
    for rows in out.values():
        rows.sort(key=lambda r: r["step"])
    return out


def values(rows: list[dict[str, Any]]) -> list[float]:
    return [float(r["value"]) for r in rows]


def steps(rows: list[dict[str, Any]]) -> list[int]:
    return [int(r["step"]) for r in rows]


def seconds(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def train(client: Tora, duration: float) -> int:
    """A training loop of plain Python that logs a loss every few milliseconds; returns its steps."""
    step = 0
    end = time.monotonic() + duration
    while time.monotonic() < end:
        total = sum(i * i for i in range(2000))
        client.metric("loss", 1.0 / (1 + total % 97 + step), step)
        step += 1
        time.sleep(0.002)
    return step


def meminfo_total_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / (1 << 20)
    raise AssertionError("no MemTotal")


def test_a_run_logs_plausible_system_metrics_at_whole_seconds_since_it_started(
    server: ToraServer, no_gpu_tools: None, tmp_path: Path
) -> None:
    t = Tora.create_experiment("sys-metrics")
    assert len(system_threads()) == 1
    began = time.monotonic()
    logged = train(t, 1.3)
    ballast = bytearray(200 << 20)  # RSS grows by 200 MiB, once the pages are touched
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    with (tmp_path / "written").open("wb") as f:  # 16 MiB that reach the disk
        for _ in range(16):
            f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())
    logged += train(t, 1.2)  # so a sample comes after the allocation and the write
    assert t.finish() == 0
    elapsed = time.monotonic() - began
    del ballast
    assert system_threads() == []

    got = series(server, t.experiment_id)
    assert len(got["loss"]) == logged, "the training loop's own points are all there"
    assert set(HOST) <= set(got), sorted(got)
    assert not [n for n in got if n.startswith("sys/gpu")]
    run = server.get(f"/experiments/{t.experiment_id}")
    started = seconds(run["started_at"])
    for name in HOST:
        rows = got[name]
        at = steps(rows)
        assert at == sorted(set(at)), f"{name}: each step once, increasing: {at}"
        assert at[-1] <= elapsed
        assert at[-1] >= 2, f"{name}: a sample each second over {elapsed:.1f} s: {at}"
        for row in rows:  # the step is the second of the run at which the sample was taken
            assert -0.5 <= seconds(row["created_at"]) - started - row["step"] <= 2.0, (name, row)
        if name not in ("sys/cpu_percent", "sys/process_cpu_percent"):  # rates need a previous sample
            assert at[0] == 0, f"{name} is sampled as the run starts"
    cpus = os.cpu_count() or 1
    assert all(0 <= v <= 100 for v in values(got["sys/cpu_percent"]))
    assert all(0 <= v <= 100 * cpus + 5 for v in values(got["sys/process_cpu_percent"]))
    assert max(values(got["sys/process_cpu_percent"])) > 5, "the training loop kept a core busy"
    assert all(0 < v <= 100 for v in values(got["sys/memory_percent"]))
    assert all(0 < v <= meminfo_total_gib() for v in values(got["sys/memory_used_gb"]))
    rss = values(got["sys/process_rss_mb"])
    assert 5 < rss[0] < 2000
    assert max(rss) - rss[0] > 150, f"the 200 MiB allocated show: {rss}"
    for name in ("sys/disk_read_mb", "sys/disk_write_mb", "sys/net_recv_mb", "sys/net_sent_mb"):
        cumulative = values(got[name])
        assert cumulative[0] == 0.0, f"{name} counts from the run's start"
        assert cumulative == sorted(cumulative), f"{name} never goes back: {cumulative}"
    if os.major(os.stat(tmp_path).st_dev) != 0:  # on a block device, not tmpfs or overlay
        assert values(got["sys/disk_write_mb"])[-1] >= 12, "the 16 MiB written and synced are counted"


def test_an_offline_run_spools_its_system_metrics_and_sync_uploads_them(
    server: ToraServer, no_gpu_tools: None, sdk_env: Path
) -> None:
    t = Tora.create_experiment("sys-offline", mode="offline")
    time.sleep(1.5)
    t.finish()
    assert spool_files(sdk_env)
    assert server.call("GET", f"/experiments/{t.experiment_id}")[0] == 404, "nothing was sent"
    done = sync()
    assert done.returncode == 0, done.stderr
    got = series(server, t.experiment_id)
    assert steps(got["sys/memory_percent"])[:2] == [0, 1]
    assert set(HOST) - {"sys/cpu_percent", "sys/process_cpu_percent"} <= set(got)


def test_system_metrics_false_turns_them_off(server: ToraServer) -> None:
    t = Tora.create_experiment("sys-off", system_metrics=False)
    assert system_threads() == []
    t.metric("loss", 1.0, 0)
    time.sleep(1.2)
    t.finish()
    assert [r["name"] for r in server.metrics(t.experiment_id)] == ["loss"]


@pytest.mark.parametrize("off", ["0", "false", "No", " off "])
def test_tora_system_metrics_off_in_the_environment_turns_them_off(
    server: ToraServer, monkeypatch: pytest.MonkeyPatch, off: str
) -> None:
    monkeypatch.setenv("TORA_SYSTEM_METRICS", off)
    experiment_id = tora.setup("sys-env-off")
    assert system_threads() == []
    tora.tmetric("loss", 1.0, 0)
    time.sleep(1.2)
    tora.finish()
    assert [r["name"] for r in server.metrics(experiment_id)] == ["loss"]


def test_the_argument_wins_over_the_environment(
    server: ToraServer, monkeypatch: pytest.MonkeyPatch, no_gpu_tools: None
) -> None:
    monkeypatch.setenv("TORA_SYSTEM_METRICS", "0")
    experiment_id = tora.setup("sys-env-off-arg-on", system_metrics=True)
    assert len(system_threads()) == 1
    time.sleep(1.2)
    tora.finish()
    assert system_threads() == []
    assert "sys/memory_percent" in {r["name"] for r in server.metrics(experiment_id)}


def test_system_metrics_must_be_a_bool_or_none_and_is_checked_before_anything_is_sent(server: ToraServer) -> None:
    workspace = tora.create_workspace("sys-bad-arg")
    with pytest.raises(tora.ToraValidationError, match="system_metrics must be True, False or None, got str"):
        Tora.create_experiment("sys-bad-arg", workspace["id"], system_metrics="no")  # type: ignore[arg-type]
    assert server.get(f"/workspaces/{workspace['id']}/experiments") == []
    with pytest.raises(tora.ToraValidationError, match="system_metrics"):
        tora.setup("sys-bad-arg", system_metrics=1)  # type: ignore[arg-type]
    assert not tora.is_initialized()


def test_the_thread_is_gone_after_finish_shutdown_and_a_with_block(server: ToraServer, no_gpu_tools: None) -> None:
    a = Tora.create_experiment("sys-a")
    b = Tora.create_experiment("sys-b")
    assert len(system_threads()) == 2
    a.finish()
    assert len(system_threads()) == 1
    b.shutdown()
    assert system_threads() == []
    with Tora.create_experiment("sys-c"):
        assert len(system_threads()) == 1
    assert system_threads() == []
    tora.setup("sys-d")
    assert len(system_threads()) == 1
    tora.shutdown()
    assert system_threads() == []


def test_a_script_that_never_finishes_gets_its_last_sample_at_exit(
    server: ToraServer, tmp_path: Path, no_gpu_tools: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORA_SYSTEM_METRICS_INTERVAL", "10")
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            """
            import time, tora
            print(tora.setup("sys-atexit"))
            time.sleep(2.6)
            """
        )
    )
    done = run_python([str(script)])
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    experiment_id = done.stdout.strip().splitlines()[-1]
    got = series(server, experiment_id)
    assert steps(got["sys/memory_percent"]) == [0, 2], "at the start, then as the process exits"
    assert server.get(f"/experiments/{experiment_id}")["state"] == "finished"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_does_not_sample(server: ToraServer, tmp_path: Path, no_gpu_tools: None) -> None:
    script = tmp_path / "fork.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys, threading, time, tora
            from tora import Tora
            t = Tora.create_experiment("sys-fork")
            print(t.experiment_id, flush=True)
            pid = os.fork()
            if pid == 0:  # a data-loader worker, say
                time.sleep(2.2)
                names = [th.name for th in threading.enumerate()]
                sys.exit(3 if "tora-system" in names or t._system.running else 0)
            time.sleep(2.2)
            _, status = os.waitpid(pid, 0)
            t.finish()
            print(os.waitstatus_to_exitcode(status))
            """
        )
    )
    done = run_python([str(script)])
    assert done.returncode == 0, done.stderr
    experiment_id, child_exit = done.stdout.split()
    assert child_exit == "0", "the child had no sampling thread"
    for name, rows in series(server, experiment_id).items():
        assert steps(rows) == sorted(set(steps(rows))), f"{name}: one sample per step, the parent's"


def test_a_loaded_run_counts_seconds_from_when_it_started(server: ToraServer, no_gpu_tools: None) -> None:
    first = Tora.create_experiment("sys-resumed", system_metrics=False)
    first.finish()
    time.sleep(2.2)
    again = Tora.load_experiment(first.experiment_id)
    time.sleep(1.2)
    again.finish()
    at = steps(series(server, first.experiment_id)["sys/memory_percent"])
    assert at[0] >= 2, f"steps go on from the run's start, not from 0: {at}"
    assert at == sorted(set(at))


def test_two_gpus_from_nvidia_smi_when_pynvml_is_absent(
    server: ToraServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = fake_nvidia_smi(tmp_path / "bin", monkeypatch, f"printf '{TWO_A100}'\n")
    t = Tora.create_experiment("sys-gpu")
    time.sleep(1.3)
    t.finish()
    got = series(server, t.experiment_id)
    for gpu in (0, 1):
        for field in GPU_FIELDS:
            assert f"sys/gpu{gpu}/{field}" in got, (gpu, field, sorted(got))
    last = {name: rows[-1]["value"] for name, rows in got.items()}
    assert last["sys/gpu0/utilization"] == 97
    assert last["sys/gpu0/memory_used_gb"] == pytest.approx(31457 / 1024)
    assert last["sys/gpu0/memory_percent"] == pytest.approx(100 * 31457 / 40960)
    assert last["sys/gpu0/temperature_c"] == 63
    assert last["sys/gpu0/power_w"] == pytest.approx(312.45)
    assert last["sys/gpu1/utilization"] == 0
    assert last["sys/gpu1/power_w"] == pytest.approx(54.12)
    assert steps(got["sys/gpu1/temperature_c"]) == steps(got["sys/memory_percent"])
    assert len(calls.read_text().split()) == len(steps(got["sys/gpu0/utilization"])) + 1, "one call a sample, + a probe"


FAKE_PYNVML = """
# A stand-in for nvidia-ml-py's pynvml on a host with two A100s (this machine has no GPU):
# the calls and shapes of the real module; GPU 1 does not report its power.
import os
from types import SimpleNamespace

NVML_TEMPERATURE_GPU = 0
_MIB = 1 << 20


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


def _note(what):
    with open(os.environ["FAKE_NVML_CALLS"], "a") as f:
        f.write(what + "\\n")


def nvmlInit():
    _note("init")


def nvmlShutdown():
    _note("shutdown")


def nvmlDeviceGetCount():
    return 2


def nvmlDeviceGetHandleByIndex(i):
    return ("handle", i)


def nvmlDeviceGetUtilizationRates(handle):
    return SimpleNamespace(gpu=(97, 0)[handle[1]], memory=(41, 0)[handle[1]])


def nvmlDeviceGetMemoryInfo(handle):
    used = (31457, 4)[handle[1]] * _MIB
    return SimpleNamespace(total=40960 * _MIB, used=used, free=40960 * _MIB - used)


def nvmlDeviceGetTemperature(handle, sensor):
    assert sensor == NVML_TEMPERATURE_GPU
    return (63, 31)[handle[1]]


def nvmlDeviceGetPowerUsage(handle):
    if handle[1] == 1:
        raise NVMLError_NotSupported("Not Supported")
    return 312450  # milliwatts
"""


def test_gpus_through_pynvml_when_it_imports_and_finds_them(
    server: ToraServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "pynvml.py").write_text(FAKE_PYNVML)
    monkeypatch.syspath_prepend(str(modules))
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    calls = tmp_path / "nvml-calls"
    monkeypatch.setenv("FAKE_NVML_CALLS", str(calls))
    smi_calls = fake_nvidia_smi(tmp_path / "bin", monkeypatch, f"printf '{TWO_A100}'\n", pynvml=True)
    t = Tora.create_experiment("sys-gpu-nvml")
    time.sleep(1.2)
    t.finish()
    got = series(server, t.experiment_id)
    last = {name: rows[-1]["value"] for name, rows in got.items()}
    assert last["sys/gpu0/utilization"] == 97
    assert last["sys/gpu0/memory_used_gb"] == pytest.approx(31457 / 1024)
    assert last["sys/gpu0/memory_percent"] == pytest.approx(100 * 31457 / 40960)
    assert last["sys/gpu0/temperature_c"] == 63
    assert last["sys/gpu0/power_w"] == pytest.approx(312.45)
    assert last["sys/gpu1/temperature_c"] == 31
    assert "sys/gpu1/power_w" not in got, "a field the GPU does not report is left out"
    assert steps(got["sys/gpu0/utilization"]) == steps(got["sys/memory_percent"])
    assert calls.read_text().split() == ["init", "shutdown"], "NVML is started once and shut down at the end"
    assert not smi_calls.exists(), "nvidia-smi is not needed"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_pynvml_without_a_driver_falls_back_to_nvidia_smi(
    server: ToraServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """nvidia-ml-py installed (test.sh installs it) where NVIDIA's driver is not, as on this machine."""
    with pytest.raises(pynvml.NVMLError):
        pynvml.nvmlInit()
    caplog.set_level(logging.INFO, logger="tora")
    fake_nvidia_smi(tmp_path / "bin", monkeypatch, f"printf '{TWO_A100}'\n", pynvml=True)
    t = Tora.create_experiment("sys-gpu-no-driver")
    time.sleep(1.2)
    t.finish()
    got = series(server, t.experiment_id)
    assert got["sys/gpu1/temperature_c"][-1]["value"] == 31
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_no_pynvml_and_no_nvidia_smi_means_no_gpu_metrics_and_no_warning(
    server: ToraServer, no_gpu_tools: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tora")
    t = Tora.create_experiment("sys-no-gpu")
    time.sleep(1.2)
    t.finish()
    names = {r["name"] for r in server.metrics(t.experiment_id)}
    assert "sys/memory_percent" in names
    assert not [n for n in names if n.startswith("sys/gpu")]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_nvidia_smi_without_a_driver_is_no_gpu_not_a_warning(
    server: ToraServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tora")
    calls = fake_nvidia_smi(
        tmp_path / "bin",
        monkeypatch,
        'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."; exit 9\n',
    )
    t = Tora.create_experiment("sys-no-driver")
    time.sleep(1.2)
    t.finish()
    names = {r["name"] for r in server.metrics(t.experiment_id)}
    assert "sys/memory_percent" in names
    assert not [n for n in names if n.startswith("sys/gpu")]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(calls.read_text().split()) == 1, "asked once, then left alone"


def test_an_nvidia_smi_that_stops_answering_is_named_once_and_the_rest_goes_on(
    server: ToraServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_system, "NVIDIA_SMI_TIMEOUT", 0.5)
    fake_nvidia_smi(tmp_path / "bin", monkeypatch, f"if [ $n -ge 4 ]; then exec sleep 30; fi\nprintf '{TWO_A100}'\n")
    t = Tora.create_experiment("sys-gpu-hangs")
    logged = train(t, 3.3)
    t.finish()
    warnings = [r.getMessage() for r in caplog.records if r.name == "tora" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "nvidia-smi took more than 0.5 s" in warnings[0]
    got = series(server, t.experiment_id)
    assert len(got["loss"]) == logged
    assert steps(got["sys/gpu0/utilization"]) == [0, 1], "the probe and the first two samples answered"
    assert steps(got["sys/memory_percent"])[-1] >= 3, "host metrics went on"


def test_unreadable_proc_is_one_warning_and_training_goes_on(
    server: ToraServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    no_gpu_tools: None,
) -> None:
    monkeypatch.setattr(_system, "PROC", tmp_path / "no-proc")
    t = Tora.create_experiment("sys-no-proc")
    logged = train(t, 2.4)
    assert t.finish() == 0
    warnings = [r.getMessage() for r in caplog.records if r.name == "tora" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    for source in ("cpu", "memory", "process memory", "network"):
        assert f"{source} (" in warnings[0]
    if _system._physical_disks(_system.SYS):
        assert "disk (" in warnings[0]
    assert "not sampled again" in warnings[0]
    got = series(server, t.experiment_id)
    assert len(got["loss"]) == logged
    assert steps(got["sys/process_cpu_percent"])[-1] >= 2, "what does not need /proc goes on"
    assert not set(got) & (set(HOST) - {"sys/process_cpu_percent"})


def test_garbage_in_proc_is_one_warning_too(
    server: ToraServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    no_gpu_tools: None,
) -> None:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "net").mkdir()
    (proc / "stat").write_text("intr 1 2 3\n")
    (proc / "meminfo").write_text("MemTotal: lots kB\n")
    (proc / "self" / "statm").write_text("")
    (proc / "diskstats").write_text("")
    (proc / "net" / "dev").write_text("eth0: 12 x\n")
    monkeypatch.setattr(_system, "PROC", proc)
    t = Tora.create_experiment("sys-garbage-proc")
    train(t, 1.3)
    t.finish()
    warnings = [r.getMessage() for r in caplog.records if r.name == "tora" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    names = {r["name"] for r in server.metrics(t.experiment_id)}
    assert "sys/process_cpu_percent" in names
    assert "sys/net_recv_mb" in names, "a line that is not an interface's is skipped, not an error"


def test_the_interval_comes_from_the_environment_with_a_floor_of_one_second(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for raw, expected, warned in [
        ("", 10.0, False),
        ("2.5", 2.5, False),
        ("30", 30.0, False),
        ("0.2", 1.0, True),
        ("0", 10.0, True),
        ("-3", 10.0, True),
        ("ten", 10.0, True),
        ("nan", 10.0, True),
        ("inf", 10.0, True),
    ]:
        caplog.clear()
        monkeypatch.setenv("TORA_SYSTEM_METRICS_INTERVAL", raw)
        assert _config.load().system_metrics_interval == expected, raw
        said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert bool(said) == warned, (raw, said)
        if warned:
            assert "TORA_SYSTEM_METRICS_INTERVAL" in said[0]
            caplog.clear()
            _config.load()
            assert not caplog.records, "said once, not at every run"


def test_the_interval_paces_the_samples(
    server: ToraServer, monkeypatch: pytest.MonkeyPatch, no_gpu_tools: None
) -> None:
    monkeypatch.setenv("TORA_SYSTEM_METRICS_INTERVAL", "2")
    t = Tora.create_experiment("sys-every-2s")
    time.sleep(4.4)
    t.finish()
    assert steps(series(server, t.experiment_id)["sys/memory_percent"]) == [0, 2, 4]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            TWO_A100,
            {
                "sys/gpu0/utilization": 97.0,
                "sys/gpu0/memory_used_gb": 31457 / 1024,
                "sys/gpu0/memory_percent": 100 * 31457 / 40960,
                "sys/gpu0/temperature_c": 63.0,
                "sys/gpu0/power_w": 312.45,
                "sys/gpu1/utilization": 0.0,
                "sys/gpu1/memory_used_gb": 4 / 1024,
                "sys/gpu1/memory_percent": 100 * 4 / 40960,
                "sys/gpu1/temperature_c": 31.0,
                "sys/gpu1/power_w": 54.12,
            },
        ),
        (  # a GeForce that reports no power, a board that supports no utilisation; \r\n, a blank line
            "0, 12, 812, 8192, 45, [N/A]\r\n\r\n1, [Not Supported], 0, 0, 38, 15.30\r\n",
            {
                "sys/gpu0/utilization": 12.0,
                "sys/gpu0/memory_used_gb": 812 / 1024,
                "sys/gpu0/memory_percent": 100 * 812 / 8192,
                "sys/gpu0/temperature_c": 45.0,
                "sys/gpu1/memory_used_gb": 0.0,
                "sys/gpu1/temperature_c": 38.0,
                "sys/gpu1/power_w": 15.3,
            },
        ),
        (  # a header (run without noheader) and a stray line are skipped
            "index, utilization.gpu [%], memory.used [MiB], memory.total [MiB], temperature.gpu, power.draw [W]\n"
            "WARNING: infoROM is corrupted at gpu 0000:04:00.0\n"
            "3, 50, 1024, 2048, 70, 100\n",
            {
                "sys/gpu3/utilization": 50.0,
                "sys/gpu3/memory_used_gb": 1.0,
                "sys/gpu3/memory_percent": 50.0,
                "sys/gpu3/temperature_c": 70.0,
                "sys/gpu3/power_w": 100.0,
            },
        ),
    ],
)
def test_nvidia_smi_output_is_parsed_defensively(text: str, expected: dict[str, float]) -> None:
    assert _system.parse_nvidia_smi(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "No devices were found\n", "0, 1, 2\n"])
def test_nvidia_smi_output_without_a_gpu_line_is_an_error(text: str) -> None:
    with pytest.raises(ValueError, match="unexpected nvidia-smi output"):
        _system.parse_nvidia_smi(text)
