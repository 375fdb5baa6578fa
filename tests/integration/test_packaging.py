"""The checkout as a user gets it: a plain ``pip install .`` into a fresh venv.

One clean venv per test session (no ``--system-site-packages``, no editable
install, no build-isolation tricks) gets ``pip install .`` run on a copy of the
checkout, so the build's ``build/`` and ``*.egg-info`` never land in the work
tree.  Everything is then run from that venv's ``bin/`` with a working
directory outside the checkout and no ``PYTHONPATH``, so the checkout is not on
``sys.path`` and only what the wheel installed can be imported.

Checked: the wheel carries no ``dropin.cache`` (a stale Twisted plugin cache
would shadow the real one; the copy gets one planted, as a ``twistd`` run from a
developer's checkout leaves it) and does not clobber Twisted's own files;
``twistd --help`` lists ``zktwist``; ``twistd -n zktwist`` and ``twist zktwist``
both serve kazoo and ``ruok`` and stop cleanly on SIGTERM; a bad config value
fails with status 1 and one error line naming the key and the file; an unknown
key is only a warning.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from tests.support.processes import PROJECT_ROOT, free_port, four_letter, wait_for_port

kazoo_client = pytest.importorskip("kazoo.client")

INSTALL_TIMEOUT = 600
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0

#: Not copied into the build tree: VCS data, virtualenvs and earlier build output.
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
    ".pytest_cache", ".mypy_cache", ".hypothesis", ".tox", "_trial_temp*",
)


def base_python() -> str:
    """The interpreter the test venv was made from (a venv inside a venv would inherit nothing, but be safe)."""
    candidate = getattr(sys, "_base_executable", None)
    if candidate and Path(candidate).exists() and (
            sys.prefix == sys.base_prefix or not Path(candidate).resolve().is_relative_to(Path(sys.prefix).resolve())):
        return candidate
    for name in (f"python{sys.version_info[0]}.{sys.version_info[1]}", "python3", "python"):
        path = Path(sys.base_prefix) / "bin" / name
        if path.exists():
            return str(path)
    return sys.executable


def clean_env() -> Dict[str, str]:
    """The environment minus anything that would put the checkout (or another venv) on sys.path."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONUSERBASE")}
    venv_bin = os.environ.get("VIRTUAL_ENV")
    if venv_bin:
        env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                      if not p.startswith(venv_bin))
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


class Installed:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.venv = root / "venv"
        self.src = root / "src"
        self.bin = self.venv / "bin"
        self.python = str(self.bin / "python")
        self.twistd = str(self.bin / "twistd")
        self.twist = str(self.bin / "twist")
        self.install_log = ""

    def run(self, argv: List[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(argv, cwd=str(cwd), env=clean_env(), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> Installed:
    inst = Installed(tmp_path_factory.mktemp("pkg"))
    shutil.copytree(PROJECT_ROOT, inst.src, ignore=COPY_IGNORE, symlinks=True)
    # A developer who ran twistd from the checkout has a plugin cache there; it must not be packaged.
    planted = inst.src / "twisted" / "plugins" / "dropin.cache"
    if not planted.exists():
        planted.write_bytes(b"stale plugin cache from a checkout run\n")
    started = time.monotonic()
    venv = subprocess.run([base_python(), "-m", "venv", str(inst.venv)], env=clean_env(), cwd=str(inst.root),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert venv.returncode == 0, venv.stdout
    pip = inst.run([inst.python, "-m", "pip", "install", "."], cwd=inst.src, timeout=INSTALL_TIMEOUT)
    inst.install_log = pip.stdout
    assert pip.returncode == 0, f"pip install . failed:\n{pip.stdout[-6000:]}"
    print(f"venv + pip install . took {time.monotonic() - started:.1f}s")
    return inst


@pytest.fixture
def outside(tmp_path) -> Path:
    """A working directory that is not the checkout nor inside it."""
    path = tmp_path / "run"
    path.mkdir()
    assert PROJECT_ROOT.resolve() not in (path.resolve(), *path.resolve().parents)
    return path


def write_config(directory: Path, port: int, extra: Optional[List[str]] = None) -> Path:
    data = directory / "data"
    data.mkdir(exist_ok=True)
    cfg = directory / "zoo.cfg"
    lines = [
        "tickTime=2000",
        f"dataDir={data}",
        f"clientPort={port}",
        "clientPortAddress=127.0.0.1",
        "4lw.commands.whitelist=*",
    ] + list(extra or [])
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


class Running:
    """A server process started from the installed venv; always stopped."""

    def __init__(self, argv: List[str], cwd: Path, port: int) -> None:
        self.port = port
        self.log_path = cwd / "server.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, cwd=str(cwd), env=clean_env(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_serving(self) -> None:
        try:
            wait_for_port(self.port, START_TIMEOUT, self.proc)
        except (RuntimeError, TimeoutError) as e:
            raise AssertionError(f"{e}; log:\n{self.log()[-5000:]}")

    def terminate(self) -> int:
        """SIGTERM, then wait; returns the exit status (SIGKILL after STOP_TIMEOUT is a failure)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"did not stop within {STOP_TIMEOUT}s of SIGTERM; log:\n{self.log()[-5000:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        else:
            try:  # anything the server left in its process group
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def assert_serves(port: int) -> None:
    assert four_letter(port, "ruok") == "imok"
    client = kazoo_client.KazooClient(hosts=f"127.0.0.1:{port}", timeout=10.0)
    client.start(timeout=15)
    try:
        path = f"/pkg-{uuid.uuid4().hex[:8]}"
        assert client.create(path, b"installed from a wheel") == path
        data, stat = client.get(path)
        assert data == b"installed from a wheel" and stat.version == 0
    finally:
        client.stop()
        client.close()


def assert_clean_stop(server: Running) -> None:
    status = server.terminate()
    log = server.log()
    # Twisted stops the reactor, then re-raises the signal so the status says "terminated by SIGTERM".
    assert status in (0, -signal.SIGTERM), f"exit status {status}; log:\n{log[-5000:]}"
    assert "Received SIGTERM" in log, f"SIGTERM was not handled by the reactor; log:\n{log[-5000:]}"
    assert "Traceback" not in log and "Unhandled" not in log, log[-5000:]


# --------------------------------------------------------------------------- the wheel


def test_installed_files(installed, outside):
    probe = installed.run([installed.python, "-c", (
        "import importlib.metadata as m, json, zktwist;"
        "print(json.dumps({'files': [str(f) for f in m.files('zktwist')], 'module': zktwist.__file__}))")],
        cwd=outside)
    assert probe.returncode == 0, probe.stdout
    info = json.loads(probe.stdout.strip().splitlines()[-1])
    files = info["files"]
    venv = installed.venv.resolve()
    assert venv in Path(info["module"]).resolve().parents, f"zktwist imported from {info['module']}, not the venv"
    assert not [f for f in files if "dropin.cache" in f], files
    assert "twisted/plugins/zktwist_plugin.py" in files, files
    # Twisted's own files are Twisted's: the wheel adds a plugin module and nothing else under twisted/.
    clobber = [f for f in files if f.startswith("twisted/")
               and not f.startswith("twisted/plugins/zktwist_plugin") and "__pycache__/zktwist_plugin" not in f]
    assert not clobber, clobber
    assert "zktwist/__init__.py" in files
    assert not [f for f in files if f.startswith("tests/")], "the test suite must not be installed as 'tests'"
    # The wheel pip built went into site-packages intact: nothing planted in the source tree leaked into it.
    site = next(iter(venv.glob("lib/python*/site-packages")))
    assert not (site / "twisted" / "plugins" / "dropin.cache").exists() or \
        (site / "twisted" / "plugins" / "dropin.cache").read_bytes() != b"stale plugin cache from a checkout run\n"


def test_twistd_help_lists_zktwist(installed, outside):
    result = installed.run([installed.twistd, "--help"], cwd=outside)
    assert result.returncode == 0, result.stdout
    assert any(line.split()[:1] == ["zktwist"] for line in result.stdout.splitlines()), result.stdout
    assert "Traceback" not in result.stdout


# --------------------------------------------------------------------------- running it


def test_twistd_serves_and_stops_on_sigterm(installed, outside):
    port = free_port()
    cfg = write_config(outside, port)
    server = Running([installed.twistd, "-n", "--pidfile=", "zktwist", "--config", str(cfg)], outside, port)
    try:
        server.wait_serving()
        assert_serves(port)
        assert_clean_stop(server)
    finally:
        server.kill()


def test_twist_serves_and_stops_on_sigterm(installed, outside):
    port = free_port()
    cfg = write_config(outside, port)
    server = Running([installed.twist, "zktwist", "--config", str(cfg)], outside, port)
    try:
        server.wait_serving()
        assert_serves(port)
        assert_clean_stop(server)
    finally:
        server.kill()


# --------------------------------------------------------------------------- configuration errors


@pytest.mark.parametrize("key,value", [("tickTime", "abc"), ("clientPort", "notaport")])
def test_bad_config_value_is_one_error_line(installed, outside, key, value):
    port = free_port()
    cfg = write_config(outside, port)
    text = cfg.read_text().splitlines()
    text = [line for line in text if not line.startswith(f"{key}=")] + [f"{key}={value}"]
    cfg.write_text("\n".join(text) + "\n")
    try:
        result = installed.run([installed.twistd, "-n", "--pidfile=", "zktwist", "--config", str(cfg)],
                               cwd=outside, timeout=60)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"twistd kept running with {key}={value}: {e.output!r}")
    out = result.stdout
    assert result.returncode == 1, f"exit status {result.returncode}; output:\n{out[-5000:]}"
    assert "Traceback" not in out, out
    naming = [line for line in out.splitlines() if key in line and str(cfg) in line]
    assert len(naming) == 1, f"want exactly one line naming {key!r} and {cfg}; output:\n{out[-5000:]}"


def test_unknown_config_key_is_only_a_warning(installed, outside):
    port = free_port()
    cfg = write_config(outside, port, ["someUnknownKeyXyz=42"])
    server = Running([installed.twistd, "-n", "--pidfile=", "zktwist", "--config", str(cfg)], outside, port)
    try:
        server.wait_serving()
        assert_serves(port)
        warned = [line for line in server.log().splitlines() if "someUnknownKeyXyz" in line]
        assert warned, f"no warning naming the unknown key; log:\n{server.log()[-5000:]}"
        assert any(word in line.lower() for line in warned for word in ("warn", "unknown", "ignor")), warned
        assert_clean_stop(server)
    finally:
        server.kill()
