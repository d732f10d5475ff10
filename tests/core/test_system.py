"""The hardware sampler: psutil figures, first and last samples, NVML and torch.cuda paths, ranks, cost."""

from __future__ import annotations

import subprocess
import sys
import time
import types

import psutil
import pytest

import epochal
from epochal import system
from epochal.run import Run
from epochal.store import read_jsonl

BASE_KEYS = {"memory/percent", "proc/rss_mb", "disk/free_gb"}
RATE_KEYS = {"cpu/percent", "proc/cpu_percent", "disk/read_mbps", "disk/write_mbps", "net/sent_mbps", "net/recv_mbps"}


def _samples(run, name="system.jsonl"):
    return read_jsonl(run.dir / name)[0]


def fake_nvml(count=2, fail_init=False, no_power=False):
    """A stand-in for nvidia-ml-py's ``pynvml`` module (unit tests of the NVML code path)."""
    calls = []

    class NVMLError(Exception):
        pass

    def init():
        calls.append("init")
        if fail_init:
            raise NVMLError("NVML Shared Library Not Found")

    def power(handle):
        if no_power:
            raise NVMLError("Not Supported")
        return 70_500 + handle  # milliwatts

    return types.SimpleNamespace(
        calls=calls, NVMLError=NVMLError, NVML_TEMPERATURE_GPU=0,
        nvmlInit=init, nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: count,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetName=lambda h: f"Fake GPU {h}",
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=40 + h, memory=10),
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=(h + 1) * 2**30, total=16 * 2**30, free=0),
        nvmlDeviceGetTemperature=lambda h, sensor: 60 + h,
        nvmlDeviceGetPowerUsage=power,
    )


def test_first_sample_at_start_last_at_finish(run_root):
    run = epochal.init(project="hw", system_interval=3600)  # no periodic sample would come in this test
    sampler = run._sampler
    run.finish()
    rows = _samples(run)
    assert len(rows) == 2 and sampler.samples == 2
    first, last = rows
    assert BASE_KEYS <= set(first) and not (RATE_KEYS & set(first))  # no rate without a previous reading
    assert BASE_KEYS | RATE_KEYS <= set(last)
    assert first["rank"] == 0 and first["time"] <= last["time"]
    assert last["proc/rss_mb"] > 10 and 0 <= last["memory/percent"] <= 100 and last["disk/free_gb"] > 0
    assert 0 <= last["cpu/percent"] <= 100 and last["proc/cpu_percent"] >= 0


def test_periodic_samples_and_reading_back():
    run = epochal.init(project="hw", system_interval=0.02)
    deadline = time.monotonic() + 10
    while run._sampler.samples < 4 and time.monotonic() < deadline:
        sum(range(20_000))  # keep busy instead of sleeping; the sampler thread runs meanwhile
    run.finish()
    frame = epochal.open_run(run.id).system()
    assert len(frame) >= 5
    assert {"time", "rank", "cpu/percent", "proc/rss_mb"} <= set(frame.columns)
    assert frame["time"].is_monotonic_increasing


def test_interval_zero_disables_the_sampler():
    run = epochal.init(system_interval=0)
    assert run._sampler is None
    run.finish()
    assert not (run.dir / "system.jsonl").exists()


def test_rss_includes_children(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import sys; b = bytearray(60 * 2**20); sys.stdin.read()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while psutil.Process(child.pid).memory_info().rss < 50 * 2**20 and time.monotonic() < deadline:
            pass
        fake_run = types.SimpleNamespace(dir=tmp_path, world_size=1, log_system=lambda values: None)
        sampler = system.SystemSampler(fake_run, 3600)
        sampler.stop()
        own = psutil.Process().memory_info().rss / 2**20
        assert sampler.read()["proc/rss_mb"] > own + 40
    finally:
        child.stdin.close()
        child.wait(10)


def test_nvml_reader_reports_every_gpu():
    read = system.nvml_reader(fake_nvml(count=2))
    values = read()
    assert values["gpu/0/util_percent"] == 40 and values["gpu/1/util_percent"] == 41
    assert values["gpu/1/memory_used_mb"] == 2048 and values["gpu/0/memory_total_mb"] == 16384
    assert values["gpu/0/temperature_c"] == 60 and values["gpu/1/power_w"] == pytest.approx(70.501)


def test_nvml_reader_keeps_what_works_and_picks_the_local_gpu():
    values = system.nvml_reader(fake_nvml(count=4, no_power=True), only=2)()
    assert set(values) == {"gpu/2/util_percent", "gpu/2/memory_used_mb", "gpu/2/memory_total_mb", "gpu/2/temperature_c"}
    assert system.nvml_reader(fake_nvml(fail_init=True)) is None
    assert system.nvml_reader(fake_nvml(count=0)) is None


def test_sampler_uses_an_injected_pynvml(monkeypatch):
    fake = fake_nvml(count=1)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    run = epochal.init(project="gpu", system_interval=3600)
    run.finish()
    last = _samples(run)[-1]
    assert fake.calls == ["init"]
    assert last["gpu/0/util_percent"] == 40 and last["gpu/0/power_w"] == pytest.approx(70.5)


def test_without_gpus_there_are_no_gpu_keys(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(fail_init=True))
    run = epochal.init(system_interval=3600)
    run.finish()
    assert not [k for row in _samples(run) for k in row if k.startswith("gpu/")]


def test_torch_cuda_reader_only_when_cuda_is_in_use():
    class Cuda:
        initialized = False

        def is_available(self):
            return True

        def is_initialized(self):
            return self.initialized

        def device_count(self):
            return 1

        def memory_allocated(self, index):
            return 512 * 2**20

        def memory_reserved(self, index):
            return 1024 * 2**20

    torch = types.SimpleNamespace(cuda=Cuda())
    assert system.torch_cuda_reader(torch) is None  # never initialise CUDA on the user's behalf
    torch.cuda.initialized = True
    assert system.torch_cuda_reader(torch)() == {"gpu/0/memory_allocated_mb": 512.0, "gpu/0/memory_reserved_mb": 1024.0}
    broken = types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: False))
    assert system.torch_cuda_reader(broken) is None


def test_each_rank_writes_its_own_file(run_root):
    owner = Run(project="ddp", root=run_root, run_id="job-1", rank=0, world_size=2, system_interval=3600)
    other = Run(project="ddp", root=run_root, run_id="job-1", rank=1, world_size=2, system_interval=3600)
    other.finish()
    owner.finish()
    assert {r["rank"] for r in _samples(owner, "system.rank0.jsonl")} == {0}
    assert {r["rank"] for r in _samples(owner, "system.rank1.jsonl")} == {1}
    assert set(epochal.open_run("job-1").system()["rank"]) == {0, 1}


def test_sampler_cost_is_far_below_one_percent_of_a_core(tmp_path):
    fake_run = types.SimpleNamespace(dir=tmp_path, world_size=1, log_system=lambda values: None)
    sampler = system.SystemSampler(fake_run, 3600)
    for _ in range(50):
        sampler.sample()
    sampler.stop()
    per_sample = sampler.cpu_seconds / sampler.samples
    # at the 1 s interval the benchmark uses, the share of one core is per_sample / 1 s
    assert per_sample < 0.005, f"{per_sample * 1e3:.2f} ms of CPU per sample"
