"""build_lut on Ray: a local Ray with 2 workers gives the local executor's rows, row for
row (analytical backend, and Timeloop through the replaying stand-in mapper); a worker
killed mid-run loses only its rows and a rerun completes the table; clear errors without
Ray or with a bad --ray-address."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import pytest
from fake_timeloop import write_fake_tools

from cosearch import build_lut
from cosearch.errors import UserError
from cosearch.hw import executor
from cosearch.hw.build import LutJob, LutJobIncomplete, run
from cosearch.hw.gemmini import get_hw
from cosearch.hw.lut import read_lut
from cosearch.hw.timeloop import MapperSettings

HWS = (get_hw("gemmini-256k-64k"), get_hw("gemmini-64k-256k"))
SHAPES = "M,K,N\n128,768,768\n512,64,512\n64,64,64\n128,256,1024\n"
KILL_SHAPE = "M512_K64_N512"  # the fake mapper's work dir for this shape
WALL = ("mapper_seconds",)  # wall time: the one column that differs between runs
AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A local Ray with 2 worker CPUs whose workers see the stand-in Timeloop tools (and a
    kill switch, the file `marker`) on PATH; build_lut uses it as it is."""
    ray = pytest.importorskip("ray", reason='Ray is an optional extra: pip install -e ".[ray]"')
    tmp = tmp_path_factory.mktemp("ray")
    marker = tmp / "kill"
    bindir = write_fake_tools(tmp / "bin", kill_marker=marker)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
        mp.setenv("RAY_worker_niceness", "0")  # as nice as pytest (Ray's default adds 15)
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
        try:
            yield marker
        finally:
            ray.shutdown()


def _job(tmp_path, name: str, **kw) -> LutJob:
    shapes = tmp_path / "shapes.csv"
    shapes.write_text(SHAPES)
    return LutJob(
        hws=HWS,
        shapes_file=str(shapes),
        out=str(tmp_path / f"{name}.csv"),
        workdir=str(tmp_path / f"work-{name}"),
        settings=MapperSettings(max_tries=1),  # one mapper run per row
        **kw,
    )


def _rows(path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in WALL} for r in read_lut(path)]


@pytest.mark.parametrize("backend", ["analytical", "timeloop"])
def test_ray_rows_equal_local_rows(ray_cluster, tmp_path, backend):
    (local,) = run(_job(tmp_path, "local", backend=backend, jobs=2))
    (on_ray,) = run(_job(tmp_path, "ray", backend=backend, jobs=2, executor="ray"))
    want = _rows(local)
    assert len(want) == len(HWS) * 4 and {r["backend"] for r in want} == {backend}
    assert _rows(on_ray) == want
    if backend == "timeloop":  # the mapper really ran on the Ray workers
        assert all(float(r["mapper_seconds"]) > 0 for r in read_lut(on_ray))
        assert (tmp_path / "work-ray" / HWS[0].name / KILL_SHAPE / "try0" / "mapper.log").exists()


def test_killed_worker_loses_its_rows_and_rerun_completes(ray_cluster, tmp_path, monkeypatch):
    monkeypatch.setattr(executor, "RAY_MAX_RETRIES", 0)  # a dead worker fails its task at once
    (local,) = run(_job(tmp_path, "local", backend="timeloop", jobs=2))
    job = _job(tmp_path, "ray", backend="timeloop", executor="ray", jobs=2)
    ray_cluster.write_text(KILL_SHAPE)  # every run of that shape kills its worker
    with pytest.raises(LutJobIncomplete, match=r"2 of 8 rows failed .*M,K,N=512,64,512.*rerun"):
        run(job)
    got = {(r["hw"], r["M"], r["K"], r["N"]) for r in read_lut(job.out)}
    want = {(r["hw"], r["M"], r["K"], r["N"]) for r in read_lut(local)}
    assert want - got == {(hw.name, 512, 64, 512) for hw in HWS}  # only the killed rows
    first = read_lut(job.out)
    ray_cluster.unlink()
    (done,) = run(job)  # the rerun costs just the missing rows: the others keep their times
    assert _rows(done) == _rows(local)
    assert [r for r in read_lut(done) if (r["M"], r["K"], r["N"]) != (512, 64, 512)] == first


@pytest.mark.slow
def test_worker_killed_once_is_retried_by_ray(ray_cluster, tmp_path):
    (local,) = run(_job(tmp_path, "local", backend="timeloop"))
    ray_cluster.write_text(f"{KILL_SHAPE}\nonce\n")
    (out,) = run(_job(tmp_path, "ray", backend="timeloop", executor="ray"))
    assert not ray_cluster.exists()  # a worker did die
    assert _rows(out) == _rows(local)


@pytest.mark.slow
def test_cli_starts_a_local_ray_for_the_job(tmp_path):
    """No Ray in the process: the job starts one with --jobs CPUs and stops it after."""
    pytest.importorskip("ray", reason='Ray is an optional extra: pip install -e ".[ray]"')
    shapes = tmp_path / "shapes.csv"
    shapes.write_text(SHAPES)
    hw = ",".join(h.name for h in HWS)
    argv = ["--shapes", str(shapes), "--hw", hw]
    build_lut.main([*argv, "--out", str(tmp_path / "local.csv")])
    r = subprocess.run(
        [sys.executable, "-m", "cosearch.build_lut", *argv, "--out", str(tmp_path / "ray.csv")]
        + ["--executor", "ray", "--jobs", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert _rows(tmp_path / "ray.csv") == _rows(tmp_path / "local.csv")
    assert len(read_lut(tmp_path / "ray.csv")) == 8


def test_ray_missing_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    shapes = tmp_path / "s.csv"
    shapes.write_text(SHAPES)
    argv = ["--shapes", str(shapes), "--out", str(tmp_path / "o.csv"), "--hw", HWS[0].name]
    assert build_lut.main([*argv, "--executor", "ray"]) == 2
    assert 'pip install -e ".[ray]"' in capsys.readouterr().err
    assert build_lut.main([*argv, "--ray-address", "127.0.0.1:6379"]) == 2
    assert "--ray-address needs --executor ray" in capsys.readouterr().err


class _RayThatStartsOnTry:
    """Stands in for the `ray` module: a local node that starts on try `n` (Ray raises a
    bare Exception when its node misses its start-up deadline on a busy machine)."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, []

    def is_initialized(self) -> bool:
        return False

    def init(self, **kw) -> None:
        self.calls.append("init")
        if self.calls.count("init") < self.n:
            raise Exception("The current node timed out during startup.\nmore lines")

    def shutdown(self) -> None:
        self.calls.append("shutdown")


def test_a_local_ray_that_does_not_start_is_started_again(monkeypatch):
    ray = _RayThatStartsOnTry(3)
    monkeypatch.setitem(sys.modules, "ray", ray)
    executor.RayExecutor(workers=2)
    assert ray.calls == ["init", "shutdown", "init", "shutdown", "init"]
    ray = _RayThatStartsOnTry(executor.LOCAL_START_ATTEMPTS + 1)
    monkeypatch.setitem(sys.modules, "ray", ray)
    with pytest.raises(UserError) as e:
        executor.RayExecutor(workers=2)
    assert str(e.value) == (
        f"could not start a local Ray for the job in {executor.LOCAL_START_ATTEMPTS} attempts "
        "(The current node timed out during startup.); on a busy machine retry later, or use "
        "--executor local"
    )
    assert ray.calls.count("init") == executor.LOCAL_START_ATTEMPTS


def test_bad_ray_address_fails_fast(tmp_path, capsys):
    pytest.importorskip("ray", reason='Ray is an optional extra: pip install -e ".[ray]"')
    shapes = tmp_path / "s.csv"
    shapes.write_text(SHAPES)
    argv = ["--shapes", str(shapes), "--out", str(tmp_path / "o.csv"), "--hw", HWS[0].name]
    argv += ["--executor", "ray"]
    assert build_lut.main([*argv, "--ray-address", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "--ray-address 127.0.0.1:1: nothing answers there" in err and "ray start" in err
    assert build_lut.main([*argv, "--ray-address", "nonsense"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.slow
def test_killed_ray_job_keeps_its_rows_and_resumes(tmp_path):
    """SIGKILL the CLI mid-run: the rows it wrote stay, its Ray goes with it, and the same
    command run again costs only the rest."""
    pytest.importorskip("ray", reason='Ray is an optional extra: pip install -e ".[ray]"')
    import psutil

    bindir = write_fake_tools(tmp_path / "bin", delay_s=1.0)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    shapes = tmp_path / "shapes.csv"
    shapes.write_text(SHAPES)
    out = tmp_path / "ray.csv"
    cmd = [sys.executable, "-m", "cosearch.build_lut", "--shapes", str(shapes), "--out", str(out)]
    cmd += ["--hw", ",".join(h.name for h in HWS), "--backend", "timeloop", "--max-tries", "1"]
    cmd += ["--executor", "ray", "--jobs", "2", "--workdir", str(tmp_path / "work")]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (out.exists() and len(read_lut(out)) >= 2) and time.monotonic() < deadline:
            assert p.poll() is None, "the job ended before it could be killed"
            time.sleep(0.05)
        children = psutil.Process(p.pid).children(recursive=True)
        names = {}  # read while they run: a dead process has no name to read
        for c in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                names[c.pid] = c.name()
    finally:
        p.kill()
        p.wait()
    first = read_lut(out)
    assert 2 <= len(first) < 8
    _, alive = psutil.wait_procs(children, timeout=30)
    for c in alive:  # do not leave them running
        c.kill()
    # Ray's node (GCS, raylet, workers) dies with the job; its dashboard and runtime-env
    # agents were seen to outlive it by more than 30 s (the test ends them)
    lingering = sorted(names.get(c.pid, str(c.pid)) for c in alive)
    assert not [n for n in lingering if n not in AGENTS], f"outlived the killed job: {lingering}"
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    done = read_lut(out)
    assert len(done) == 8 and [r for r in done if r in first] == first  # kept, not re-costed
