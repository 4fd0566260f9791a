"""System metrics: what the machine does while a run trains, logged as the run's ``sys/`` metrics.

A daemon thread ("tora-system") samples at the run's start, then every ``interval`` seconds
(TORA_SYSTEM_METRICS_INTERVAL, default 10), and once more when the run ends. Each sample goes
through the client's ordinary ``log_metrics``, so an offline run spools it like any point. The
step of a sample is whole seconds since the run started (for a loaded run, since the server's
``started_at``); the thread never logs the same step twice.

What is read, and from where (Linux: /proc and /sys; elsewhere what the standard library gives):

==============================  ============================================================
``sys/cpu_percent``             the machine's CPU use since the last sample, 0-100 (all cores)
``sys/process_cpu_percent``     this process's CPU time over wall time, 100 = one core busy
``sys/memory_percent``          memory in use (total - available) / total, 0-100
``sys/memory_used_gb``          the same in GiB
``sys/process_rss_mb``          this process's resident memory, MiB (elsewhere: its peak)
``sys/disk_read_mb``            MiB read from physical disks since the run's monitor started
``sys/disk_write_mb``           MiB written, likewise (cumulative: the slope is the rate)
``sys/net_recv_mb``             MiB received on every interface but ``lo``, cumulative
``sys/net_sent_mb``             MiB sent, likewise
``sys/gpu{i}/utilization``      percent of time a kernel ran (NVML / nvidia-smi ``utilization.gpu``)
``sys/gpu{i}/memory_percent``   GPU memory used / total, 0-100
``sys/gpu{i}/memory_used_gb``   GPU memory used, GiB
``sys/gpu{i}/temperature_c``    degrees Celsius
``sys/gpu{i}/power_w``          watts drawn
==============================  ============================================================

GPUs are NVIDIA's, through ``pynvml`` (the ``nvidia-ml-py`` package) when it imports and
initialises, else ``nvidia-smi`` when it is on PATH (a subprocess per sample, with a timeout);
``i`` is the index nvidia-smi shows. Disk and network are cumulative rather than rates: a late or
missed sample loses nothing, and the chart's slope is the rate.

Nothing here raises into the training loop. A source that fails (an unreadable file, an output
that does not parse, a tool that times out) is named in one warning and not sampled again; the
others go on. A GPU source that fails on its first read means "no usable GPU" and is only logged
at debug level. After ``os.fork`` the thread does not exist in the child and is not restarted.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import math
import os
import shutil
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from ._exceptions import ToraMetricError

logger = logging.getLogger("tora")

PROC = Path("/proc")
"""Where the Linux sources read from; read when a monitor starts."""
SYS = Path("/sys")
NVIDIA_SMI_TIMEOUT = 5.0
"""Seconds one ``nvidia-smi`` call may take; past it the GPU source is given up on."""
STOP_TIMEOUT = 2.0
"""Longest wait for the final sample when a run ends."""

_MIB = float(1 << 20)
_GIB = float(1 << 30)
_SECTOR = 512  # /proc/diskstats counts 512-byte sectors, whatever the device's own sector size
_NVIDIA_SMI_QUERY = "index,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw"

Values = dict[str, float]
Log = Callable[[Values, int], None]


class _Source:
    """One thing sampled; ``read`` may raise, which disables it."""

    name = ""

    def read(self) -> Values:
        raise NotImplementedError

    def close(self) -> None:
        return None


class _Cumulative:
    """A counter as "since the start": never goes back when the source counter resets or wraps."""

    def __init__(self) -> None:
        self._last: float | None = None
        self.total = 0.0

    def add(self, now: float) -> float:
        if self._last is not None and now > self._last:
            self.total += now - self._last
        self._last = now
        return self.total


class _Cpu(_Source):
    name = "cpu"

    def __init__(self, proc: Path) -> None:
        self._path = proc / "stat"
        self._last: tuple[int, int] | None = None

    def read(self) -> Values:
        with self._path.open("rb") as f:
            fields = f.readline().split()
        if len(fields) < 5 or fields[0] != b"cpu":
            raise ValueError(f"unexpected first line in {self._path}")
        # user nice system idle iowait irq softirq steal (guest time is inside user already)
        ticks = [int(x) for x in fields[1:9]]
        total = sum(ticks)
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
        last, self._last = self._last, (total - idle, total)
        if last is None or total <= last[1]:
            return {}
        return {"sys/cpu_percent": _clamp(100.0 * (total - idle - last[0]) / (total - last[1]), 100.0)}


class _ProcessCpu(_Source):
    name = "process cpu"

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None

    def read(self) -> Values:
        times = os.times()
        now = (times.user + times.system, time.monotonic())
        last, self._last = self._last, now
        if last is None or now[1] <= last[1]:
            return {}
        return {"sys/process_cpu_percent": max(0.0, 100.0 * (now[0] - last[0]) / (now[1] - last[1]))}


class _Memory(_Source):
    name = "memory"

    def __init__(self, proc: Path) -> None:
        self._path = proc / "meminfo"

    def read(self) -> Values:
        kib: dict[bytes, int] = {}
        with self._path.open("rb") as f:
            for line in f:
                key, _, rest = line.partition(b":")
                if key in (b"MemTotal", b"MemAvailable", b"MemFree", b"Buffers", b"Cached"):
                    kib[key] = int(rest.split()[0])
        total = kib.get(b"MemTotal", 0)
        if total <= 0:
            raise ValueError(f"no MemTotal in {self._path}")
        available = kib.get(b"MemAvailable")
        if available is None:  # kernels before 3.14
            available = kib.get(b"MemFree", 0) + kib.get(b"Buffers", 0) + kib.get(b"Cached", 0)
        used = max(0, total - available)
        return {"sys/memory_percent": _clamp(100.0 * used / total, 100.0), "sys/memory_used_gb": used * 1024 / _GIB}


class _Rss(_Source):
    name = "process memory"

    def __init__(self, proc: Path) -> None:
        self._path = proc / "self" / "statm"
        self._page = os.sysconf("SC_PAGE_SIZE")

    def read(self) -> Values:
        with self._path.open("rb") as f:
            resident = int(f.read().split()[1])
        return {"sys/process_rss_mb": resident * self._page / _MIB}


class _PeakRss(_Source):
    """Where /proc is not: the peak resident size, all the standard library tells."""

    name = "process memory"

    def read(self) -> Values:
        import resource  # noqa: PLC0415 (POSIX only)

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        unit = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on the BSDs and Linux
        return {"sys/process_rss_mb": peak * unit / _MIB}


class _Disk(_Source):
    name = "disk"

    def __init__(self, proc: Path, sys_dir: Path) -> None:
        self._path = proc / "diskstats"
        self._devices = _physical_disks(sys_dir)
        self._read = _Cumulative()
        self._written = _Cumulative()

    def read(self) -> Values:
        if not self._devices:
            return {}
        sectors_read = sectors_written = 0
        seen = False
        with self._path.open("rb") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 10 and fields[2] in self._devices:
                    sectors_read += int(fields[5])
                    sectors_written += int(fields[9])
                    seen = True
        if not seen:
            raise ValueError(f"no disk of {sorted(self._devices)} in {self._path}")
        return {
            "sys/disk_read_mb": self._read.add(sectors_read * _SECTOR) / _MIB,
            "sys/disk_write_mb": self._written.add(sectors_written * _SECTOR) / _MIB,
        }


def _physical_disks(sys_dir: Path) -> frozenset[bytes]:
    """Whole disks backed by a device: /sys/block entries with a ``device`` link. Partitions are
    not listed there and loop, ram, zram, dm-* and md* have no device, so nothing counts twice."""
    try:
        return frozenset(os.fsencode(d.name) for d in (sys_dir / "block").iterdir() if (d / "device").exists())
    except OSError:
        return frozenset()


class _Network(_Source):
    name = "network"

    def __init__(self, proc: Path) -> None:
        self._path = proc / "net" / "dev"
        self._recv = _Cumulative()
        self._sent = _Cumulative()

    def read(self) -> Values:
        received = sent = 0
        with self._path.open("rb") as f:
            for line in f:
                interface, colon, rest = line.partition(b":")
                fields = rest.split()
                if not colon or interface.strip() == b"lo" or len(fields) < 9:
                    continue
                received += int(fields[0])
                sent += int(fields[8])
        return {
            "sys/net_recv_mb": self._recv.add(received) / _MIB,
            "sys/net_sent_mb": self._sent.add(sent) / _MIB,
        }


class _Nvml(_Source):
    name = "gpu (pynvml)"

    def __init__(self, nvml: Any) -> None:
        nvml.nvmlInit()
        self._nvml = nvml
        try:
            self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        except Exception:
            nvml.nvmlShutdown()
            raise

    @property
    def empty(self) -> bool:
        return not self._handles

    def read(self) -> Values:
        nvml = self._nvml
        out: Values = {}
        for i, handle in enumerate(self._handles):
            prefix = f"sys/gpu{i}/"
            # Each field on its own: a GPU may not support one (power on some boards).
            rates = _attempt(nvml.nvmlDeviceGetUtilizationRates, handle)
            memory = _attempt(nvml.nvmlDeviceGetMemoryInfo, handle)
            temperature = _attempt(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU)
            milliwatts = _attempt(nvml.nvmlDeviceGetPowerUsage, handle)
            if rates is not None:
                out[prefix + "utilization"] = float(rates.gpu)
            if memory is not None:
                out[prefix + "memory_used_gb"] = memory.used / _GIB
                if memory.total:
                    out[prefix + "memory_percent"] = 100.0 * memory.used / memory.total
            if temperature is not None:
                out[prefix + "temperature_c"] = float(temperature)
            if milliwatts is not None:
                out[prefix + "power_w"] = milliwatts / 1000.0
        if self._handles and not out:
            raise RuntimeError("NVML answered no field for any GPU")
        return out

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:
            logger.debug("tora: nvmlShutdown failed", exc_info=True)


class _NvidiaSmi(_Source):
    name = "gpu (nvidia-smi)"

    def __init__(self, path: str) -> None:
        self._command = [path, f"--query-gpu={_NVIDIA_SMI_QUERY}", "--format=csv,noheader,nounits"]

    def read(self) -> Values:
        try:
            done = subprocess.run(
                self._command, capture_output=True, text=True, errors="replace", timeout=NVIDIA_SMI_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"nvidia-smi took more than {NVIDIA_SMI_TIMEOUT:g} s") from None
        if done.returncode != 0:
            said = (done.stderr.strip() or done.stdout.strip()).splitlines()
            raise RuntimeError(f"nvidia-smi exited with {done.returncode}: {said[0][:200] if said else ''}")
        return parse_nvidia_smi(done.stdout)


def parse_nvidia_smi(text: str) -> Values:
    """``nvidia-smi --query-gpu=index,utilization.gpu,memory.used,memory.total,temperature.gpu,
    power.draw --format=csv,noheader,nounits`` as metrics. A field that is not a number
    ("[N/A]", "[Not Supported]") is left out; a line that is not one GPU's is skipped.

    Raises:
        ValueError: no line is one GPU's.
    """
    out: Values = {}
    gpus = 0
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 6 or not fields[0].isdigit():
            continue
        gpus += 1
        prefix = f"sys/gpu{int(fields[0])}/"
        utilization, used_mib, total_mib, temperature, power = (_number(f) for f in fields[1:])
        if utilization is not None:
            out[prefix + "utilization"] = utilization
        if used_mib is not None:
            out[prefix + "memory_used_gb"] = used_mib / 1024
            if total_mib:
                out[prefix + "memory_percent"] = 100.0 * used_mib / total_mib
        if temperature is not None:
            out[prefix + "temperature_c"] = temperature
        if power is not None:
            out[prefix + "power_w"] = power
    if not gpus:
        raise ValueError(f"unexpected nvidia-smi output: {text.strip()[:200]!r}")
    return out


def _attempt(read: Callable[..., Any], *args: Any) -> Any:
    """An NVML call's answer, or None when it raises (NVMLError_NotSupported and the like)."""
    try:
        return read(*args)
    except Exception:
        return None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _clamp(value: float, top: float) -> float:
    return min(top, max(0.0, value))


def _gpu_source() -> _Source | None:
    """pynvml when it imports and finds GPUs, else nvidia-smi when on PATH, else None."""
    try:
        nvml: Any = importlib.import_module("pynvml")
    except Exception:  # not installed, or broken: either way not usable
        nvml = None
    if nvml is not None:
        try:
            source = _Nvml(nvml)
        except Exception as e:
            logger.debug("tora: pynvml is installed but NVML does not start (%s); trying nvidia-smi", e)
        else:
            if not source.empty:
                return source
            source.close()
            return None
    path = shutil.which("nvidia-smi")
    return _NvidiaSmi(path) if path else None


def _host_sources(proc: Path, sys_dir: Path) -> list[_Source]:
    sources: list[_Source] = [_ProcessCpu()]
    if sys.platform.startswith("linux"):
        sources += [_Cpu(proc), _Memory(proc), _Rss(proc), _Disk(proc, sys_dir), _Network(proc)]
    elif sys.platform != "win32":
        sources.append(_PeakRss())
    return sources


def started_at(raw: object) -> float | None:
    """The ``time.monotonic()`` at which a run started, from the server's ``started_at`` (RFC 3339);
    None when it is absent or does not parse. A start in the future (clock skew) counts as now."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return time.monotonic() - max(0.0, time.time() - moment.timestamp())


class SystemMetrics:
    """The sampling thread of one run. ``log(values, step)`` is the client's log_metrics."""

    def __init__(self, log: Log, interval: float, started: float | None = None) -> None:
        self._log = log
        self._interval = max(1.0, interval)
        self._started = time.monotonic() if started is None else started
        self._stop = threading.Event()
        self._pid = os.getpid()
        self._thread: threading.Thread | None = None
        self._last_step = -1
        self._dropped = False
        """Set when stop() stopped waiting: a sample that comes later is not logged."""
        self.samples = 0
        """Samples logged (each one log_metrics call)."""
        self.cpu_seconds = 0.0
        """CPU time the thread spent sampling and logging (what a run pays; bench/system_metrics.py)."""
        _LIVE.add(self)

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and os.getpid() == self._pid

    def start(self) -> None:
        thread = threading.Thread(target=self._loop, name="tora-system", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # interpreter shutting down
            return
        self._thread = thread

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Take the final sample and end the thread, waiting at most ``timeout`` seconds."""
        _LIVE.discard(self)
        self._stop.set()
        thread = self._thread
        if thread is None or os.getpid() != self._pid or thread is threading.current_thread():
            return
        thread.join(max(0.0, timeout))
        if thread.is_alive():
            self._dropped = True
            logger.debug("tora: the system metrics thread did not stop within %.1f s", timeout)

    def after_fork_in_child(self) -> None:
        self._thread = None
        self._stop.set()

    def _loop(self) -> None:
        sources: list[_Source] = []
        try:
            sources = _host_sources(PROC, SYS)
            gpu = _gpu_source()
            if gpu is not None:
                try:
                    gpu.read()  # the probe: an error here means no usable GPU, not a failure
                except Exception as e:
                    logger.debug("tora: no GPU metrics: %s", e)
                    gpu.close()
                else:
                    sources.append(gpu)
            began = time.monotonic()
            ticks = 0
            self._sample(sources)
            while not self._stop.is_set():
                ticks += 1
                due = began + ticks * self._interval
                now = time.monotonic()
                if due < now:  # the thread was held up for a whole interval: skip what was missed
                    ticks += int((now - due) // self._interval) + 1
                    due = began + ticks * self._interval
                if self._stop.wait(due - now):
                    break
                self._sample(sources)
            self._sample(sources)  # the end of the run
        except Exception:  # a bug here must never reach the training loop
            logger.warning("tora: system metrics stopped after an unexpected error", exc_info=True)
        finally:
            for source in sources:
                source.close()

    def _sample(self, sources: list[_Source]) -> None:
        began = time.thread_time()
        try:
            self._sample_once(sources)
        finally:
            self.cpu_seconds += time.thread_time() - began

    def _sample_once(self, sources: list[_Source]) -> None:
        step = int(time.monotonic() - self._started)
        if step <= self._last_step:
            return
        values: Values = {}
        failed: list[str] = []
        for source in list(sources):
            try:
                values.update(source.read())
            except Exception as e:
                sources.remove(source)
                source.close()
                failed.append(f"{source.name} ({type(e).__name__}: {str(e)[:200]})")
        if failed:
            logger.warning("tora: system metrics: cannot read %s; not sampled again in this run", "; ".join(failed))
        if not values or self._dropped or os.getpid() != self._pid:
            return
        self._last_step = step
        try:
            self._log(values, step)
        except ToraMetricError:  # the client closed meanwhile: the run is over
            self._stop.set()
            return
        self.samples += 1


def start(log: Log, *, interval: float, started: float | None = None) -> SystemMetrics:
    """A running monitor for one run."""
    global _exit_hook_registered
    if not _exit_hook_registered:
        # Registered now, not at import: after the hooks of _run and _sender, so it runs before
        # them (atexit is last in, first out) and the final sample goes out with the run's points.
        _exit_hook_registered = True
        atexit.register(_stop_all_at_exit)
    monitor = SystemMetrics(log, interval, started)
    monitor.start()
    return monitor


_LIVE: weakref.WeakSet[SystemMetrics] = weakref.WeakSet()
_exit_hook_registered = False


def _stop_all_at_exit() -> None:
    """Final samples before the runs end."""
    monitors = list(_LIVE)
    deadline = time.monotonic() + STOP_TIMEOUT
    for monitor in monitors:
        try:
            monitor.stop(deadline - time.monotonic())
        except Exception:
            logger.debug("tora: error while stopping system metrics at exit", exc_info=True)


def _after_fork_in_child() -> None:
    for monitor in list(_LIVE):
        monitor.after_fork_in_child()
    _LIVE.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
