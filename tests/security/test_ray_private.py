"""A local Ray started by mutnas is private: a new instance, listening on 127.0.0.1 only.

``ray.init()`` without an address joins whatever cluster it finds on the machine: a
``ray start`` cluster, or the address file (``ray_current_cluster``) a dead cluster leaves
in Ray's temp folder, where it then fails ("When connecting to an existing cluster,
num_cpus and num_gpus must not be provided") or hangs. And a new instance listens on every
interface. Each test runs a small search driver in a child process with its own Ray temp
folder (``RAY_TMPDIR``), so nothing here touches another user's Ray, and lists the
listening sockets of every process the driver started (from ``/proc``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")
if not Path("/proc/net/tcp").exists():
    pytest.skip("listening sockets are read from /proc (Linux)", allow_module_level=True)

LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}
ROOT = Path(__file__).parents[2]

#: the sockets listening in the process tree under a pid, from /proc (no psutil needed)
SOCKETS = r"""
import os, socket

def _table(path):
    rows = {}
    try:
        lines = open(path).read().splitlines()[1:]
    except OSError:
        return rows
    for line in lines:
        fields = line.split()
        if fields[3] != "0A":  # LISTEN
            continue
        address, port = fields[1].split(":")
        raw = bytes.fromhex(address)
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
        family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
        rows[fields[9]] = (socket.inet_ntop(family, words), int(port, 16))
    return rows

def tree(root):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found

def listening(pids):
    table = {**_table("/proc/net/tcp"), **_table("/proc/net/tcp6")}
    out = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            name = open(f"/proc/{pid}/comm").read().strip()
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in table:
                out.append([pid, name, *table[target[8:-1]]])
    return out
"""

#: a driver: a Ray evaluator without an address starts its workers, then reports
DRIVER = (
    SOCKETS
    + r"""
import json, sys, time
import evolve, ray
from evolve.data import load_dataset
from evolve.parallel import RayEvaluator

problem = evolve.Problem(
    load_dataset("digits"), evolve.ObjectiveSet(["accuracy"]),
    evolve.TrainingConfig(steps=1), device="cpu",
)
with RayEvaluator(1, init_options={"num_cpus": 1, "log_to_driver": False}) as evaluator:
    ready = evaluator.wait_ready(problem, timeout=180)
    time.sleep(1)
    report = {
        "ready": ready,
        "gcs": ray.get_runtime_context().gcs_address,
        "node_ip": ray.util.get_node_ip_address(),
        "sockets": listening(tree(os.getpid())),
    }
    report["pids"] = [p for p in tree(os.getpid()) if p != os.getpid()]
print("REPORT", json.dumps(report))
"""
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_tmp():
    """A private Ray temp folder (short: Ray's socket paths must fit in 107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="mnray-", dir="/tmp"))
    (folder / "ray").mkdir()
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], check=False)


def _env(ray_tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_TMPDIR=str(ray_tmp), OMP_NUM_THREADS="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _run_driver(ray_tmp: Path) -> dict:
    """Run the driver; its report, once every process it started has ended."""
    result = subprocess.run(
        [sys.executable, "-c", DRIVER],
        capture_output=True,
        text=True,
        env=_env(ray_tmp),
        cwd=ROOT,
        timeout=300,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert result.returncode == 0 and lines, (result.stdout[-3000:], result.stderr[-3000:])
    report = json.loads(lines[-1].removeprefix("REPORT "))
    deadline = time.monotonic() + 30
    while (left := [p for p in report["pids"] if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.5)
    report["left"] = left
    return report


def _check_private(report: dict) -> None:
    assert report["ready"] == 1
    assert report["node_ip"] == "127.0.0.1"
    names = {name for _, name, _, _ in report["sockets"]}
    assert {"gcs_server", "raylet"} <= names, report["sockets"]
    exposed = [s for s in report["sockets"] if s[2] not in LOOPBACK]
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert report["left"] == [], f"processes left after the driver ended: {report['left']}"


@pytest.mark.slow
def test_a_stale_cluster_file_is_ignored_and_every_socket_is_on_loopback(ray_tmp):
    """The address file a cluster that died left behind: the old evaluator tried to join
    it (and failed on its num_cpus); now it starts its own instance."""
    stale = f"127.0.0.1:{_free_port()}"
    (ray_tmp / "ray" / "ray_current_cluster").write_text(stale)
    report = _run_driver(ray_tmp)
    _check_private(report)
    assert report["gcs"] != stale


def _tree_of(root: int) -> list[int]:
    namespace: dict = {}
    exec(SOCKETS, namespace)
    return namespace["tree"](root)


def _listening_under(root: int) -> list:
    namespace: dict = {}
    exec(SOCKETS, namespace)
    return namespace["listening"](namespace["tree"](root))


@pytest.fixture
def ray_cluster(ray_tmp):
    """``ray start --head`` on 127.0.0.1 in the private temp folder; stopped (its own
    processes, by pid) afterwards. Yields its GCS address."""
    port = _free_port()
    env = _env(ray_tmp, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")  # keep it on loopback
    head = subprocess.Popen(
        [
            os.path.join(os.path.dirname(sys.executable), "ray"), "start", "--head", "--block",
            "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
            "--include-dashboard=false", "--disable-usage-stats",
        ],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    address_file = ray_tmp / "ray" / "ray_current_cluster"
    try:
        deadline = time.monotonic() + 120
        while not address_file.exists() and head.poll() is None:
            assert time.monotonic() < deadline, "ray start did not come up"
            time.sleep(0.5)
        assert head.poll() is None, head.stderr.read().decode()[-2000:]
        sockets = _listening_under(head.pid)
        assert sockets and all(s[2] in LOOPBACK for s in sockets), sockets
        yield address_file.read_text().strip()
    finally:
        pids = _tree_of(head.pid)
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
        for pid in pids[1:]:  # whatever of the cluster outlived its head process
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_running_ray_start_cluster_is_not_joined(ray_tmp, ray_cluster):
    report = _run_driver(ray_tmp)
    _check_private(report)
    assert report["gcs"] != ray_cluster
