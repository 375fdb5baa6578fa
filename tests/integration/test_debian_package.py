"""Build the Debian package from a copy of the tree and check what it ships.

Opt-in: set ZKTWIST_DEB_TEST=1.  It needs a Debian system with the
Build-Depends of debian/control installed (debhelper, dh-python,
pybuild-plugin-pyproject, python3-all, python3-setuptools, python3-twisted,
python3-zope.interface) and takes a minute or so.  The build runs in a
temporary copy (never in the checkout) with a system-only PATH, so a virtualenv
or pyenv python does not shadow the /usr/bin/python3.X that pybuild must use.

It only checks the package's structure: it does not install the .deb.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Dict, List

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("ZKTWIST_DEB_TEST") != "1",
        reason="set ZKTWIST_DEB_TEST=1 to build the Debian package (needs build tools, slow)",
    ),
]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PATH = "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
PYDIST = "usr/lib/python3/dist-packages"
CONFIG = "etc/zktwist/zktwist.cfg"

# Things that must never be copied into the build tree.
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache",
    ".hypothesis", ".mypy_cache", "build", "dist", ".pybuild", "_trial_temp*",
    "dropin.cache", "var",
)


def _build_env() -> Dict[str, str]:
    env = {
        k: v for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP",
                     "PYENV_VERSION", "CONDA_PREFIX", "DEB_BUILD_OPTIONS", "MAKEFLAGS")
    }
    env["PATH"] = SYSTEM_PATH
    env["LC_ALL"] = "C.UTF-8"
    return env


def _run(cmd: List[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=str(cwd), env=_build_env(), timeout=timeout,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


class BuiltPackage:
    def __init__(self, deb: Path, root: Path, control_dir: Path) -> None:
        self.deb = deb
        self.root = root  # the data archive, extracted
        self.control_dir = control_dir  # DEBIAN/ of the .deb
        with tarfile.open(fileobj=io.BytesIO(subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(deb)], check=True,
            stdout=subprocess.PIPE, env=_build_env()).stdout)) as tf:
            self.members = {m.name.lstrip("./").rstrip("/"): m for m in tf.getmembers()}
        self.paths = set(self.members) - {""}

    def control(self, name: str) -> str:
        return (self.control_dir / name).read_text()

    def field(self, name: str) -> str:
        out = subprocess.run(["dpkg-deb", "-f", str(self.deb), name], check=True,
                             stdout=subprocess.PIPE, text=True, env=_build_env())
        return out.stdout.strip()

    def unit_path(self) -> str:
        for p in ("lib/systemd/system/zktwist.service", "usr/lib/systemd/system/zktwist.service"):
            if p in self.paths:
                return p
        pytest.fail(f"zktwist.service not in the package: {sorted(self.paths)}")


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> BuiltPackage:
    for tool in ("dpkg-buildpackage", "dpkg-checkbuilddeps", "dpkg-deb", "dh", "pybuild"):
        if shutil.which(tool, path=SYSTEM_PATH) is None:
            pytest.fail(f"{tool} not found: install debhelper, dh-python and dpkg-dev "
                        "(ZKTWIST_DEB_TEST=1 asks for this test to run)")

    work = tmp_path_factory.mktemp("debbuild")
    src = work / "zktwist"
    shutil.copytree(PROJECT_ROOT, src, ignore=COPY_IGNORE, symlinks=True)

    deps = _run(["dpkg-checkbuilddeps"], src)
    assert deps.returncode == 0, f"build dependencies missing:\n{deps.stdout}"

    build = _run(["dpkg-buildpackage", "-us", "-uc", "-b"], src)
    assert build.returncode == 0, "dpkg-buildpackage failed:\n" + build.stdout[-8000:]
    (work / "build.log").write_text(build.stdout)

    debs = sorted(work.glob("zktwist_*_all.deb"))
    assert len(debs) == 1, f"expected one zktwist_*_all.deb, found {debs}"

    root = work / "root"
    control_dir = work / "DEBIAN"
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(root)], check=True, env=_build_env())
    subprocess.run(["dpkg-deb", "-e", str(debs[0]), str(control_dir)], check=True,
                   env=_build_env())
    pkg = BuiltPackage(debs[0], root, control_dir)
    return pkg


def _unit_settings(text: str) -> Dict[str, List[str]]:
    """systemd unit key=value pairs (keys may repeat), across all sections."""
    settings: Dict[str, List[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_control_fields(package: BuiltPackage) -> None:
    assert package.field("Package") == "zktwist"
    assert package.field("Architecture") == "all"
    assert package.field("Version").startswith("0.1.0")
    depends = {re.split(r"[\s(]", d.strip())[0] for d in package.field("Depends").split(",")}
    for dep in ("python3-twisted", "python3-zope.interface", "python3-service-identity",
                "python3-openssl"):
        assert dep in depends, f"{dep} missing from Depends: {sorted(depends)}"


def test_python_package_and_twistd_plugin(package: BuiltPackage) -> None:
    paths = package.paths
    assert f"{PYDIST}/twisted/plugins/zktwist_plugin.py" in paths
    assert f"{PYDIST}/zktwist/__init__.py" in paths
    # Only our plugin module goes into Twisted's namespace.
    twisted_files = {p for p in paths if p.startswith(f"{PYDIST}/twisted/")
                     and package.members[p].isfile()}
    assert twisted_files == {f"{PYDIST}/twisted/plugins/zktwist_plugin.py"}
    assert f"{PYDIST}/twisted/__init__.py" not in paths
    assert f"{PYDIST}/twisted/plugins/__init__.py" not in paths
    # Nothing from the checkout's test suite or build leftovers.
    assert not any(p.startswith(f"{PYDIST}/tests") for p in paths)
    assert not any(p.endswith(".pyc") or "/__pycache__" in p for p in paths)
    # The console script from setup.cfg's entry points.
    assert "usr/bin/zktwist" in paths


def test_no_dropin_cache(package: BuiltPackage) -> None:
    assert not [p for p in package.paths if p.endswith("dropin.cache")]


def test_plugin_cache_trigger(package: BuiltPackage) -> None:
    directives = [line.split("#", 1)[0].split() for line in package.control("triggers").splitlines()]
    directives = [d for d in directives if d]
    assert ["activate-noawait", "twisted-plugins-cache"] in directives \
        or ["activate", "twisted-plugins-cache"] in directives \
        or ["activate-await", "twisted-plugins-cache"] in directives, directives


def test_plugin_discoverable_from_installed_layout(package: BuiltPackage) -> None:
    pydist = package.root / PYDIST
    env = _build_env()
    env["PYTHONPATH"] = str(pydist)
    result = subprocess.run(
        ["/usr/bin/python3", str(PROJECT_ROOT / "debian/tests/plugin-discovery"),
         "--expect-under", str(pydist)],
        cwd=str(package.root), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout


def test_systemd_unit(package: BuiltPackage) -> None:
    unit = package.unit_path()
    settings = _unit_settings((package.root / unit).read_text())
    assert settings["Type"] == ["simple"]
    assert settings["User"] == ["zktwist"]
    assert settings["Group"] == ["zktwist"]
    assert settings["WorkingDirectory"] == ["/var/lib/zktwist"]
    assert settings["Restart"] == ["on-failure"]
    (exec_start,) = settings["ExecStart"]
    argv = exec_start.split()
    assert argv[0] == "/usr/bin/twistd3"
    assert os.path.exists(argv[0]), "python3-twisted (a Build-Depends) should provide it"
    for arg in ("-n", "--pidfile=", "--logfile=-"):
        assert arg in argv[: argv.index("zktwist")], argv
    assert argv[argv.index("zktwist"):] == ["zktwist", "--config", "/etc/zktwist/zktwist.cfg"]
    assert settings["NoNewPrivileges"] == ["yes"]
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["PrivateTmp"] == ["yes"]
    assert "LimitNOFILE" in settings
    writable = " ".join(settings["ReadWritePaths"]).split()
    assert "/var/lib/zktwist" in writable and "/var/log/zktwist" in writable
    assert settings["WantedBy"] == ["multi-user.target"]


def test_systemd_unit_verifies(package: BuiltPackage) -> None:
    analyze = shutil.which("systemd-analyze", path=SYSTEM_PATH)
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    result = subprocess.run([analyze, "verify", str(package.root / package.unit_path())],
                            env=_build_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_system_user_and_directories(package: BuiltPackage) -> None:
    sysusers = (package.root / "usr/lib/sysusers.d/zktwist.conf").read_text()
    users = [line.split() for line in sysusers.splitlines()
             if line.strip() and not line.startswith("#")]
    assert any(u[0] == "u" and u[1] == "zktwist" and "/var/lib/zktwist" in u for u in users), users

    tmpfiles = (package.root / "usr/lib/tmpfiles.d/zktwist.conf").read_text()
    dirs = {f[1]: f for f in (line.split() for line in tmpfiles.splitlines()
                              if line.strip() and not line.startswith("#"))}
    for d in ("/var/lib/zktwist", "/var/log/zktwist"):
        assert d in dirs and dirs[d][0] == "d" and dirs[d][3:5] == ["zktwist", "zktwist"], dirs

    # The user must exist before tmpfiles chowns the directories to it.
    postinst = package.control("postinst")
    assert "systemd-sysusers" in postinst and "systemd-tmpfiles" in postinst
    assert postinst.index("systemd-sysusers") < postinst.index("systemd-tmpfiles")


def test_config_is_a_conffile(package: BuiltPackage) -> None:
    assert f"/{CONFIG}" in package.control("conffiles").split()
    member = package.members[CONFIG]
    assert member.isfile() and member.uname == "root" and member.mode & 0o002 == 0
    config = {}
    for line in (package.root / CONFIG).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            config[key.strip()] = value.strip()
    assert config["tickTime"] == "2000"
    assert config["dataDir"] == "/var/lib/zktwist"
    assert config["clientPort"] == "2181"
    assert config["clientPortAddress"] == "127.0.0.1"
    assert set(config["4lw.commands.whitelist"].split(",")) == {
        "ruok", "srvr", "stat", "mntr", "conf", "envi", "isro"}


def test_no_logrotate_when_logging_to_journal(package: BuiltPackage) -> None:
    # The unit logs to stdout (the journal), so no logrotate config is shipped.
    assert not [p for p in package.paths if p.startswith("etc/logrotate.d")]
