"""The pinned engine from tools/pulumi/build.sh: version, what is installed beside it, and its failure paths."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import REPO

BUILD_SCRIPT = REPO / "tools" / "pulumi" / "build.sh"
BESIDE_THE_CLI = ("pulumi-language-python", "pulumi-language-python-exec", "pulumi-resource-pulumi-python")


def pinned_version() -> str:
    for line in (REPO / "tools" / "pulumi" / "go.mod").read_text().splitlines():
        if "github.com/pulumi/pulumi/pkg/v3 " in line:
            return line.split()[-1]
    raise AssertionError("pkg/v3 is not pinned in tools/pulumi/go.mod")


def engine_bin_dir() -> Path:
    return Path(subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, capture_output=True,
                               text=True).stdout.strip())


def sdk_module_dir() -> Path:
    return Path(subprocess.run(["go", "list", "-m", "-f", "{{.Dir}}", "github.com/pulumi/pulumi/sdk/v3"],
                               cwd=REPO / "tools" / "pulumi", check=True, capture_output=True,
                               text=True).stdout.strip())


def test_engine_reports_the_pinned_version():
    version = subprocess.run([str(engine_bin_dir() / "pulumi"), "version"], capture_output=True, text=True,
                             env={"PULUMI_SKIP_UPDATE_CHECK": "true", "HOME": os.environ.get("HOME", "/tmp")})
    assert version.stdout.strip() == pinned_version()


def test_the_language_host_and_the_official_python_files_are_installed_beside_the_cli():
    bin_dir = engine_bin_dir()
    for name in BESIDE_THE_CLI:
        assert os.access(bin_dir / name, os.X_OK), name
    # The runner and the provider launcher are the pinned SDK's own files, not copies we wrote.
    sdk = sdk_module_dir()
    assert (bin_dir / "pulumi-language-python-exec").read_bytes() == \
        (sdk / "python" / "cmd" / "pulumi-language-python-exec").read_bytes()
    assert (bin_dir / "pulumi-resource-pulumi-python").read_bytes() == \
        (sdk / "python" / "dist" / "pulumi-resource-pulumi-python").read_bytes()
    assert (bin_dir / "language_host" / "VERSION").read_text().strip() == pinned_version()


def test_a_changed_host_source_is_reinstalled_by_the_next_run(tmp_path):
    bin_dir = engine_bin_dir()
    installed = bin_dir / "language_host" / "children.py"
    installed.write_text(installed.read_text() + "\n# stale\n")
    (bin_dir / "language_host" / ".fingerprint").write_text("stale\n")
    assert engine_bin_dir() == bin_dir
    assert installed.read_text() == (REPO / "tools" / "pulumi" / "language_host" / "children.py").read_text()


def run_build(tmp_path: Path, path: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/bash", str(BUILD_SCRIPT), *args], capture_output=True, text=True,
                          env={"PATH": path, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")})


def test_build_without_go_or_pulumi_says_how_to_install(tmp_path):
    assert not any(Path(d, "go").exists() or Path(d, "pulumi").exists() for d in ("/usr/bin", "/bin"))
    result = run_build(tmp_path, "/usr/bin:/bin")
    assert result.returncode == 1
    assert "neither a Pulumi CLI" in result.stderr and "https://www.pulumi.com/docs/install/" in result.stderr


def test_locate_never_builds(tmp_path):
    result = run_build(tmp_path, "/usr/local/go/bin:/usr/bin:/bin", "--locate")
    assert result.returncode == 3 and result.stdout == ""
    assert not (tmp_path / "cache" / "translation-tuning" / f"pulumi-{pinned_version()}" / "bin" / "pulumi").exists()


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


def test_a_recent_enough_pulumi_on_path_is_used_unchanged(tmp_path):
    fake = tmp_path / "fakebin" / "pulumi"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho {pinned_version()}\n")
    fake.chmod(0o755)
    result = run_build(tmp_path, f"{fake.parent}:/usr/bin:/bin")
    assert result.returncode == 0, result.stderr
    # Its own folder, with its own (Go) language host: nothing of ours is put beside it or in front of it.
    assert Path(result.stdout.strip()) == fake.parent
    assert sorted(path.name for path in fake.parent.iterdir()) == ["pulumi"]
    assert not (tmp_path / "cache").exists()
