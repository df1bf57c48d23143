"""The bare-machine setup: scripts/system-packages.sh, which `make demo` and `make test` call before
anything else, installs Chromium, its font and a PostgreSQL server when they are missing, or says in
one line what to install and why and stops make; `.ci/run` is only `make test`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "system-packages.sh"
BASH = shutil.which("bash")


def _run(*needs: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([BASH, str(SCRIPT), *needs], env=env, capture_output=True, text=True, timeout=60)


def test_with_everything_installed_it_says_nothing_and_succeeds():
    done = _run("venv", "chromium", "postgresql", env=dict(os.environ))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_without_a_package_manager_it_names_what_is_missing_in_one_line_and_fails(tmp_path):
    # A machine with no Chromium, no PostgreSQL and no apt-get: only the few tools the script needs.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("id", "grep"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    env = {"PATH": str(bin_dir), "INCIDENT_METRICS_CHROMIUM": str(tmp_path / "no-chromium"),
           "INCIDENT_METRICS_PG_BIN": str(tmp_path / "no-postgresql")}
    done = _run("chromium", "postgresql", env=env)
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("missing: chromium postgresql -- needed for Chromium (the PDF report and the browser test), "
                           "a PostgreSQL server (the production tests)")
    assert "apt-get install chromium postgresql" in line
    # asked only for Chromium, it does not mention PostgreSQL
    only = _run("chromium", env=env)
    assert only.returncode == 1 and "postgresql" not in only.stderr.lower().replace("incident_metrics_pg_bin", "")


def test_an_unknown_need_is_an_error():
    done = _run("mysql", env=dict(os.environ))
    assert done.returncode == 2 and "unknown need 'mysql'" in done.stderr


def test_make_runs_the_check_before_the_tests_and_the_demo_and_ci_is_only_make_test():
    for target, needs in (("test", "chromium postgresql"), ("demo", "chromium")):
        plan = subprocess.run(["make", "-n", "-W", "pyproject.toml", target], cwd=ROOT, capture_output=True,
                              text=True, timeout=60).stdout
        lines = plan.splitlines()
        check = next(i for i, line in enumerate(lines) if line.endswith(f"scripts/system-packages.sh {needs}"))
        run = next(i for i, line in enumerate(lines) if ("pytest" if target == "test" else "incident-metrics demo") in line)
        assert check < run, plan
        assert any(line.endswith("scripts/system-packages.sh venv") for line in lines[:check]), plan
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert ci == ["set -euo pipefail", 'cd "$(dirname "$0")/.."', "exec make test"]


def test_the_product_declares_no_emulator_or_unused_dependency_and_never_imports_the_emulator():
    import ast
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {d.split("==")[0].split("[")[0].lower() for d in project["dependencies"]}
    assert not runtime & {"trustme", "cryptography", "graphql-core", "statsmodels"}
    assert {d.split("==")[0] for d in project["optional-dependencies"]["emulator"]} == {
        "trustme", "cryptography", "graphql-core"}
    # The product (pipelines/, assets/) imports the emulator only inside the CLI commands that serve it.
    for path in [*(ROOT / "pipelines").rglob("*.py"), *(ROOT / "assets").rglob("*.py")]:
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "emulator" or n.startswith("emulator.") for n in names), path
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] in ("trustme", "graphql", "statsmodels") for n in names), path
