"""deploy/ holds one set of instance settings: the docker-compose file, the Dockerfile and the Helm
values agree with deploy/dagster.yaml on the storage, the queue, the warehouse pool and the retries,
and every Dagster service finds the user code where deploy/workspace.yaml says it is. (The
daemon test, tests/test_deploy.py, runs deploy/dagster.yaml itself.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pipelines.config import WAREHOUSE_POOL

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def _load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def test_dagster_yaml_is_a_valid_instance_with_postgres_storage_and_the_pool_at_one_per_run():
    from dagster._core.instance.config import dagster_instance_config

    config, _ = dagster_instance_config(str(DEPLOY), "dagster.yaml")  # raises on an unknown or mistyped key
    db = config["storage"]["postgres"]["postgres_db"]
    assert {k: v for k, v in db.items() if isinstance(v, dict)} == {
        "hostname": {"env": "DAGSTER_POSTGRES_HOST"}, "port": {"env": "DAGSTER_POSTGRES_PORT"},
        "username": {"env": "DAGSTER_POSTGRES_USER"}, "password": {"env": "DAGSTER_POSTGRES_PASSWORD"},
        "db_name": {"env": "DAGSTER_POSTGRES_DB"}}
    assert db["scheme"] == "postgresql+psycopg2"
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["concurrency"]["pools"] == {"default_limit": 1, "granularity": "run"}
    assert "password:" not in re.sub(r"password:\s*\n\s*env:", "", (DEPLOY / "dagster.yaml").read_text())
    assert WAREHOUSE_POOL == "incident_metrics_warehouse"  # the pool the comment in dagster.yaml names
    assert WAREHOUSE_POOL in (DEPLOY / "dagster.yaml").read_text()


def test_compose_runs_the_four_services_on_the_instance_of_dagster_yaml():
    compose, instance, workspace = _load("docker-compose.yaml"), _load("dagster.yaml"), _load("workspace.yaml")
    services = compose["services"]
    assert set(services) == {"postgres", "user_code", "webserver", "daemon"}
    pg_vars = {v["env"] for v in instance["storage"]["postgres"]["postgres_db"].values() if isinstance(v, dict)}
    for name in ("user_code", "webserver", "daemon"):
        env = services[name]["environment"]
        assert pg_vars <= set(env), name
        assert env["DAGSTER_POSTGRES_HOST"] == "postgres"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert services[name]["restart"] == "unless-stopped"
    assert services["postgres"]["environment"]["POSTGRES_DB"] == services["daemon"]["environment"]["DAGSTER_POSTGRES_DB"]
    grpc = workspace["load_from"][0]["grpc_server"]
    command = services["user_code"]["command"]
    assert grpc["host"] == "user_code"
    assert command[command.index("-p") + 1] == str(grpc["port"])
    assert command[command.index("--location-name") + 1] == grpc["location_name"]
    assert command[command.index("-m") + 1] == "pipelines.definitions"
    assert command[:3] == ["dagster", "api", "grpc"]  # a server whose runs the run launcher can list
    for name in ("webserver", "daemon"):
        assert "/opt/dagster/home/workspace.yaml" in services[name]["command"]
    # the one image carries the instance file where DAGSTER_HOME points
    assert services["user_code"]["env_file"] == ".env"
    storage = "dagster-storage:/opt/dagster/home/storage"  # step logs written by runs, read by the UI
    assert storage in services["user_code"]["volumes"] and storage in services["webserver"]["volumes"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    # editable: the SQL files are read from the checkout; [k8s] for the Helm chart's run pods
    assert "RUN pip install --no-cache-dir -e '.[k8s]'" in dockerfile
    assert "ENV DAGSTER_HOME=/opt/dagster/home" in dockerfile
    assert "COPY deploy/dagster.yaml deploy/workspace.yaml /opt/dagster/home/" in dockerfile
    # the secrets come from the environment, never written in the file
    for var in ("PAGERDUTY_API_TOKEN", "GITHUB_TOKEN"):
        assert services["user_code"]["environment"][var] == f"${{{var}:?set {var}}}"


def test_helm_values_carry_the_settings_of_dagster_yaml():
    values, instance = _load("helm/values.yaml"), _load("dagster.yaml")
    pools, runs = instance["concurrency"]["pools"], instance["concurrency"]["runs"]
    assert values["concurrency"] == {"enabled": True,
                                     "pools": {"defaultLimit": pools["default_limit"], "granularity": pools["granularity"]},
                                     "runs": {"maxConcurrentRuns": runs["max_concurrent_runs"]}}
    daemon = values["dagsterDaemon"]
    assert daemon["runCoordinator"] == {"enabled": True, "type": instance["run_coordinator"]["class"]}
    monitoring = instance["run_monitoring"]
    assert daemon["runMonitoring"] == {"enabled": monitoring["enabled"],
                                       "startTimeoutSeconds": monitoring["start_timeout_seconds"],
                                       "pollIntervalSeconds": monitoring["poll_interval_seconds"],
                                       "maxRuntimeSeconds": monitoring["max_runtime_seconds"]}
    retries = instance["run_retries"]
    assert daemon["runRetries"] == {"enabled": retries["enabled"], "maxRetries": retries["max_retries"],
                                    "retryOnAssetOrOpFailure": retries["retry_on_asset_or_op_failure"]}
    pg = values["postgresql"]
    assert pg["enabled"] is False and "postgresqlPassword" not in pg
    assert pg["postgresqlScheme"] == instance["storage"]["postgres"]["postgres_db"]["scheme"]
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "pipelines.definitions"]
    # the run pods mount the warehouse volume where the code expects the data directory
    env = {e["name"]: e["value"] for e in deployment["env"]}
    mounts = {m["name"]: m["mountPath"] for m in values["runLauncher"]["config"]["k8sRunLauncher"]["volumeMounts"]}
    assert mounts["data"] == env["INCIDENT_METRICS_DATA_DIR"]
    assert mounts["ownership"] == str(Path(env["INCIDENT_METRICS_OWNERSHIP"]).parent)
    assert values["retention"]["schedule"]["purgeAfterDays"] == instance["retention"]["schedule"]["purge_after_days"]


def test_the_readme_backfill_launch_has_a_valid_run_config(monkeypatch):
    import json

    import dagster as dg

    from pipelines.definitions import defs

    readme = (ROOT / "README.md").read_text()
    launch = re.search(r"dagster job launch -j (\w+) \\\n.*--config-json '([^']+)'", readme)
    assert launch, "the README's queued backfill command"
    job, config = launch.group(1), json.loads(launch.group(2))
    for token in ("PAGERDUTY_API_TOKEN", "GITHUB_TOKEN"):  # read when the resources' config is resolved
        monkeypatch.setenv(token, "not-a-real-token")
    assert job == "backfill"
    dg.validate_run_config(defs.resolve_job_def(job), config)  # raises on a wrong shape
    with pytest.raises(dg.DagsterInvalidConfigError):  # and it would catch one
        dg.validate_run_config(defs.resolve_job_def(job), {"ops": {"config": config}})
