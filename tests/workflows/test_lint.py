"""The workflows in .github/workflows pass actionlint and zizmor with zero findings.

tools/lint/install.sh provides both linters (and the shellcheck that actionlint runs on each `run:` script),
building or installing them the first time, as tools/pulumi/build.sh does for the engine. A finding fails
the test with the linter's own output. Each linter also gets a workflow it must reject, so a linter that
silently checks nothing cannot pass.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import REPO

LINT = REPO / "tools" / "lint"
BAD_WORKFLOW = """\
on: pull_request
permissions: {}
jobs:
  greet:
    runs-on: ubuntu-24.04
    permissions: {}
    steps:
      - run: echo $GREETING ${{ github.event.pull_request.title }}
"""


def tool(name: str) -> str:
    """The path of a linter, installed by tools/lint/install.sh if it is missing."""
    result = subprocess.run(["bash", str(LINT / "install.sh"), name], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def actionlint(*files: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("actionlint"), "-config-file", str(LINT / "actionlint.yaml"), "-shellcheck", tool("shellcheck"),
         "-pyflakes=", "-no-color", *files],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )


def zizmor(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("zizmor"), "--offline", "--no-progress", "--color=never", str(folder)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def bad_workflow(tmp_path: Path) -> Path:
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / "bad.yml").write_text(BAD_WORKFLOW)
    return folder


def test_linters_are_the_pinned_versions():
    pinned_actionlint = next(line.split()[2] for line in (LINT / "go.mod").read_text().splitlines()
                             if line.startswith("require github.com/rhysd/actionlint "))
    pinned_zizmor = next(line.split("==")[1] for line in (LINT / "requirements.txt").read_text().splitlines()
                         if line.startswith("zizmor=="))
    version = subprocess.run([tool("actionlint"), "-version"], capture_output=True, text=True, check=True)
    assert version.stdout.splitlines()[0] == pinned_actionlint == "v1.7.12"
    version = subprocess.run([tool("zizmor"), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"zizmor {pinned_zizmor}" == "zizmor 1.32.0"


def test_actionlint_reports_nothing():
    result = actionlint()  # every workflow under .github/workflows

    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_zizmor_offline_reports_nothing():
    result = zizmor(REPO / ".github" / "workflows")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout, result.stdout + result.stderr


def test_actionlint_rejects_an_unsafe_workflow_and_runs_shellcheck(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    folder = bad_workflow(tmp_path)

    result = actionlint(str(folder / "bad.yml"), cwd=tmp_path)

    assert result.returncode == 1
    assert "SC2086" in result.stdout  # shellcheck ran on the run: script
    assert '"github.event.pull_request.title" is potentially untrusted' in result.stdout


def test_zizmor_rejects_an_unsafe_workflow(tmp_path):
    result = zizmor(bad_workflow(tmp_path))

    assert result.returncode != 0
    assert "template-injection" in result.stdout
