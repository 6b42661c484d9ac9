"""The pinned engine: version, offline environment, and the build script's failure paths."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from deploy.engine import BUILD_SCRIPT, LOCAL_ONLY_PASSPHRASE, EngineDirs, engine_env, pulumi_bin_dir
from tests.conftest import REPO
from tuning.errors import ConfigError


def pinned_version() -> str:
    for line in (REPO / "tools" / "pulumi" / "go.mod").read_text().splitlines():
        if "github.com/pulumi/pulumi/pkg/v3 " in line:
            return line.split()[-1]
    raise AssertionError("pkg/v3 is not pinned in tools/pulumi/go.mod")


def test_engine_reports_the_pinned_version():
    bin_dir = pulumi_bin_dir()
    version = subprocess.run([str(bin_dir / "pulumi"), "version"], capture_output=True, text=True,
                             env={"PULUMI_SKIP_UPDATE_CHECK": "true", "HOME": os.environ.get("HOME", "/tmp")})
    assert version.stdout.strip() == pinned_version()
    assert os.access(bin_dir / "pulumi-resource-pulumi-python", os.X_OK)


def test_engine_environment_is_offline(tmp_path):
    env = engine_env(tmp_path / "bin", EngineDirs(tmp_path / "state", tmp_path / "home"), "local", base={})
    assert env["PULUMI_BACKEND_URL"] == f"file://{tmp_path / 'state'}"
    assert env["PULUMI_SKIP_UPDATE_CHECK"] == "true"
    assert env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] == "true"
    assert env["PATH"].split(os.pathsep)[0] == str(tmp_path / "bin")


def test_only_the_local_stack_gets_a_default_passphrase(tmp_path):
    dirs = EngineDirs(tmp_path / "state", tmp_path / "home")
    assert engine_env(tmp_path, dirs, "local", base={})["PULUMI_CONFIG_PASSPHRASE"] == LOCAL_ONLY_PASSPHRASE
    with pytest.raises(ConfigError, match="PULUMI_CONFIG_PASSPHRASE: stack 'prod' encrypts its secrets"):
        engine_env(tmp_path, dirs, "prod", base={})
    assert engine_env(tmp_path, dirs, "prod", base={"PULUMI_CONFIG_PASSPHRASE": "x"})["PULUMI_CONFIG_PASSPHRASE"] == "x"


def test_a_passphrase_exported_for_a_real_stack_does_not_break_the_local_one(tmp_path):
    dirs = EngineDirs(tmp_path / "state", tmp_path / "home")
    env = engine_env(tmp_path, dirs, "local", base={"PULUMI_CONFIG_PASSPHRASE": "prod-secret",
                                                    "PULUMI_CONFIG_PASSPHRASE_FILE": "/run/secrets/p"})
    assert env["PULUMI_CONFIG_PASSPHRASE"] == LOCAL_ONLY_PASSPHRASE and "PULUMI_CONFIG_PASSPHRASE_FILE" not in env


def run_build(tmp_path: Path, path: str) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/bash", str(BUILD_SCRIPT)], capture_output=True, text=True,
                          env={"PATH": path, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")})


def test_build_without_go_or_pulumi_says_how_to_install(tmp_path):
    assert not any(Path(d, "go").exists() or Path(d, "pulumi").exists() for d in ("/usr/bin", "/bin"))
    result = run_build(tmp_path, "/usr/bin:/bin")
    assert result.returncode == 1
    assert "neither a Pulumi CLI" in result.stderr and "https://www.pulumi.com/docs/install/" in result.stderr


def test_failed_build_points_at_its_log(tmp_path):
    fake_go = tmp_path / "fakebin" / "go"
    fake_go.parent.mkdir()
    fake_go.write_text("#!/bin/sh\n[ \"$1\" = version ] && echo 'go version go1.26 linux/amd64' && exit 0\n"
                       "echo 'compile error: simulated' >&2; exit 2\n")
    fake_go.chmod(0o755)
    result = run_build(tmp_path, f"{fake_go.parent}:/usr/bin:/bin")
    assert result.returncode == 1
    log = tmp_path / "cache" / "translation-tuning" / f"pulumi-{pinned_version()}" / "build.log"
    assert f"building pulumi {pinned_version()} failed; see {log}" in result.stderr
    assert "compile error: simulated" in log.read_text()


def test_a_recent_enough_pulumi_on_path_is_used_instead_of_building(tmp_path):
    fake = tmp_path / "fakebin" / "pulumi"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho {pinned_version()}\n")
    fake.chmod(0o755)
    result = run_build(tmp_path, f"{fake.parent}:/usr/bin:/bin")
    assert result.returncode == 0, result.stderr
    bin_dir = Path(result.stdout.strip())
    assert (bin_dir / "pulumi").resolve() == fake
    assert os.access(bin_dir / "pulumi-resource-pulumi-python", os.X_OK)
