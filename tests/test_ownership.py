"""ownership.yaml and Backstage catalog loading: values, and errors that name file, line and reason."""

from __future__ import annotations

from datetime import date, time

import pytest

from pipelines.connectors import CONNECTORS
from pipelines.ingest.contract import Connector, OwnershipNames
from pipelines.ownership import OwnershipError, load_backstage_catalog, load_ownership, parse_ownership

GOOD = """\
version: 1
teams:
  - key: payments
    name: Payments
    time_zone: Europe/Berlin
    business_hours: {start: "08:00", end: "18:00", days: [mon, tue, wed, thu, fri]}
    adopted_on: 2025-06-01
  - key: search
    time_zone: America/New_York
services:
  - pagerduty_service_id: PSVC001
    name: checkout-api
    repos: [acme/checkout-api]
    owners:
      - team: search
      - team: payments
        from: 2025-03-01
"""


def test_parses_teams_services_and_dated_owners():
    o = parse_ownership(GOOD, "ownership.yaml")
    payments, search = o.teams
    assert (payments.key, payments.name, payments.time_zone, payments.adopted_on) == (
        "payments", "Payments", "Europe/Berlin", date(2025, 6, 1))
    assert (payments.business_hours_start, payments.business_hours_end, payments.business_days) == (
        time(8), time(18), (0, 1, 2, 3, 4))
    assert (search.name, search.adopted_on, search.business_hours_start) == ("search", None, time(9))
    owners = o.service_owners_frame().to_dict("records")
    assert owners == [
        {"service_key": "pagerduty:PSVC001", "source": "pagerduty", "service_id": "PSVC001",
         "service_name": "checkout-api", "team_key": "search", "valid_from": None, "valid_to": date(2025, 3, 1)},
        {"service_key": "pagerduty:PSVC001", "source": "pagerduty", "service_id": "PSVC001",
         "service_name": "checkout-api", "team_key": "payments", "valid_from": date(2025, 3, 1), "valid_to": None},
    ]
    assert o.repos_of("github") == ["acme/checkout-api"]
    assert o.service_repos_frame().to_dict("records") == [
        {"source": "pagerduty", "service_id": "PSVC001", "repo_source": "github", "repo": "acme/checkout-api"}]
    assert o.teams_frame()["business_isodows"].tolist() == ["1,2,3,4,5", "1,2,3,4,5"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("teams: [\n", "ownership.yaml:2: not valid YAML"),
        ("", "ownership.yaml:1: the file is empty"),
        ("teams:\n  - key: a\n    colour: red\n", "ownership.yaml:3: unknown key 'colour' in a team"),
        ("teams:\n  - key: Bad Key\n", "ownership.yaml:2: team key 'Bad Key' must be lower-case"),
        ("teams:\n  - key: a\n  - key: a\n", "ownership.yaml:3: team 'a' is defined twice (first on line 2)"),
        ("teams:\n  - key: a\n    time_zone: Mars/Olympus\n", "ownership.yaml:3: unknown time zone 'Mars/Olympus'"),
        ("teams:\n  - key: a\n    adopted_on: soon\n", "ownership.yaml:3: adopted_on of team 'a' must be a date"),
        ("teams:\n  - key: a\n    business_hours: {start: '18:00', end: '09:00'}\n",
         "ownership.yaml:3: business_hours of team 'a': start must be before end"),
        ("teams:\n  - key: a\nservices:\n  - pagerduty_service_id: P1\n    owner: b\n",
         "ownership.yaml:5: service 'P1' is owned by unknown team 'b'"),
        ("teams:\n  - key: a\nservices:\n  - pagerduty_service_id: P1\n", "ownership.yaml:4: service 'P1' has no owner"),
        ("teams:\n  - key: a\nservices:\n  - pagerduty_service_id: P1\n    owner: a\n    repos: [notarepo]\n",
         "ownership.yaml:6: repo 'notarepo' must look like owner/name"),
        ("teams:\n  - key: a\n  - key: b\nservices:\n  - pagerduty_service_id: P1\n    owners:\n      - team: a\n"
         "        from: 2025-02-01\n      - team: b\n        from: 2025-01-01\n",
         "ownership.yaml:9: service 'P1': owner 'from' dates must increase"),
    ],
)
def test_errors_name_line_and_reason(text, message):
    with pytest.raises(OwnershipError) as exc:
        parse_ownership(text, "ownership.yaml")
    assert str(exc.value).startswith(message), str(exc.value)


def test_missing_file_names_the_environment_variable(tmp_path):
    with pytest.raises(OwnershipError, match="INCIDENT_METRICS_OWNERSHIP"):
        load_ownership(tmp_path / "nope.yaml")


def test_backstage_catalog(tmp_path):
    (tmp_path / "catalog-info.yaml").write_text("""\
apiVersion: backstage.io/v1alpha1
kind: Group
metadata:
  name: payments
  annotations:
    incident-metrics/time-zone: Europe/Berlin
    incident-metrics/adopted-on: "2025-06-01"
    incident-metrics/business-hours: "08:00-16:00 mon-fri"
spec:
  type: team
  profile: {displayName: Payments Team}
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: checkout-api
  annotations:
    pagerduty.com/service-id: PSVC001
    github.com/project-slug: acme/checkout-api
spec:
  type: service
  owner: group:default/payments
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: docs-site
spec:
  owner: payments
""")
    o = load_ownership(tmp_path)
    (team,) = o.teams
    assert (team.key, team.name, team.time_zone, team.adopted_on, team.business_hours_start) == (
        "payments", "Payments Team", "Europe/Berlin", date(2025, 6, 1), time(8))
    (service,) = o.services  # docs-site has no PagerDuty service
    assert (service.ids, service.name, service.repos, service.owners[0].team_key) == (
        (("pagerduty", "PSVC001"),), "checkout-api", (("github", "acme/checkout-api"),), "payments")


def test_backstage_unknown_owner_points_at_the_component(tmp_path):
    path = tmp_path / "catalog-info.yaml"
    path.write_text("kind: Group\nmetadata: {name: a}\n---\nkind: Component\nmetadata:\n  name: api\n"
                    "  annotations: {pagerduty.com/service-id: P1}\nspec: {owner: group:nobody}\n")
    with pytest.raises(OwnershipError, match=r"catalog-info.yaml:4: .*unknown team 'nobody'"):
        load_ownership(path)


def test_a_service_can_be_listed_as_unowned_on_purpose():
    o = parse_ownership(GOOD + "  - pagerduty_service_id: PSINK\n    unowned: true\n", "ownership.yaml")
    sink = o.services[-1]
    assert (sink.ids, sink.unowned, sink.owners) == ((("pagerduty", "PSINK"),), True, ())
    last = o.service_owners_frame().iloc[-1]
    assert (last["service_id"], last["service_name"]) == ("PSINK", "PSINK")
    assert last[["team_key", "valid_from", "valid_to"]].isna().all()
    with pytest.raises(OwnershipError, match=r"ownership.yaml:20: service .PSINK.: an unowned service cannot"):
        parse_ownership(GOOD + "  - pagerduty_service_id: PSINK\n    owner: search\n    unowned: true\n",
                        "ownership.yaml")


# ------------------------------------------------------------------ services named by (source, id)

# One more paging source, declared as its connector will declare it, so the file can name it.
OTHER_PAGING = Connector(name="opsgenie", label="Opsgenie", kind="paging", streams=(), resource=lambda: None,
                         ownership=OwnershipNames(backstage_annotation="opsgenie.com/team"))
MORE = CONNECTORS + (OTHER_PAGING,)

IDS = """\
teams:
  - key: payments
    ids: {pagerduty: PTEAM01}
services:
  - ids: {pagerduty: PSVC001}
    name: checkout-api
    repos: [acme/checkout-api, {github: acme/checkout-worker}]
    owner: payments
"""
OLD_KEYS = """\
teams:
  - key: payments
    pagerduty_team_id: PTEAM01
services:
  - pagerduty_service_id: PSVC001
    name: checkout-api
    repos: [acme/checkout-api, acme/checkout-worker]
    owner: payments
"""


def test_the_old_keys_read_as_ids_of_their_source():
    new, old = parse_ownership(IDS), parse_ownership(OLD_KEYS)
    assert new.services == old.services and new.teams == old.teams
    assert new.services[0].ids == (("pagerduty", "PSVC001"),)
    assert new.services[0].repos == (("github", "acme/checkout-api"), ("github", "acme/checkout-worker"))
    assert new.teams_frame()["source_team_ids"].tolist() == ['{"pagerduty": "PTEAM01"}']
    assert new.service_repos_frame().values.tolist() == [
        ["pagerduty", "PSVC001", "github", "acme/checkout-api"], ["pagerduty", "PSVC001", "github", "acme/checkout-worker"]]


def test_the_same_id_in_two_sources_is_two_services_and_repos_name_their_host():
    text = IDS + """\
  - ids: {opsgenie: PSVC001}     # the same id, another paging source: another service
    name: checkout-alerts
    repos: [{gitlab: acme/platform/checkout-api}]
    owner: payments
  - ids: {pagerduty: PSVC009, opsgenie: checkout}   # one service paged from two sources
    owner: payments
"""
    o = parse_ownership(text, "ownership.yaml", MORE)
    assert [s.ids for s in o.services] == [(("pagerduty", "PSVC001"),), (("opsgenie", "PSVC001"),),
                                           (("pagerduty", "PSVC009"), ("opsgenie", "checkout"))]
    assert o.service_owners_frame()[["service_key", "source", "service_id", "service_name"]].values.tolist() == [
        ["pagerduty:PSVC001", "pagerduty", "PSVC001", "checkout-api"],
        ["opsgenie:PSVC001", "opsgenie", "PSVC001", "checkout-alerts"],
        ["pagerduty:PSVC009", "pagerduty", "PSVC009", "PSVC009"], ["pagerduty:PSVC009", "opsgenie", "checkout", "PSVC009"]]
    assert o.repos_of("github") == ["acme/checkout-api", "acme/checkout-worker"]
    assert o.repos_of("gitlab") == ["acme/platform/checkout-api"]
    by_id = parse_ownership(IDS.replace("{github: acme/checkout-worker}", "{gitlab: 4242}"), "ownership.yaml", MORE)
    assert by_id.services[0].repos == (("github", "acme/checkout-api"), ("gitlab", "4242"))  # a project's numeric id
    with pytest.raises(OwnershipError, match=r"ownership.yaml:15: service 'PSVC001' is listed twice \(first on line 9\)"):
        parse_ownership(text + "  - ids: {opsgenie: PSVC001}\n    owner: payments\n", "ownership.yaml", MORE)


@pytest.mark.parametrize(
    ("service", "message"),
    [
        ("  - ids: {bitbucket: X1}\n    owner: a\n",
         "ownership.yaml:4: unknown key 'bitbucket' in the ids of a service (allowed: pagerduty)"),
        ("  - name: nameless\n    owner: a\n",
         "ownership.yaml:4: a service needs its id in a paging source, like 'ids: {pagerduty: <service id>}'"),
        ("  - ids: {pagerduty: P1}\n    pagerduty_service_id: P2\n    owner: a\n",
         "ownership.yaml:5: a service: two PagerDuty ids, 'P1' and 'P2'"),
        ("  - ids: {pagerduty: P1}\n    owner: a\n    repos: [{bitbucket: g/p}]\n",
         "ownership.yaml:6: unknown key 'bitbucket' in a repo of service 'P1' (allowed: github, gitlab)"),
        ("  - ids: {pagerduty: P1}\n    owner: a\n    repos: [{github: a/b, gitlab: g/p}]\n",
         "ownership.yaml:6: a repo of service 'P1' names one host and one path"),
        ("  - ids: {pagerduty: P1}\n    owner: a\n    repos: [{gitlab: project-without-group}]\n",
         "ownership.yaml:6: repo 'project-without-group' must look like group/sub/project (or the project's numeric id)"),
    ],
)
def test_ids_and_repo_hosts_are_checked(service, message):
    with pytest.raises(OwnershipError) as exc:
        parse_ownership("teams:\n  - key: a\nservices:\n" + service, "ownership.yaml")
    assert str(exc.value).startswith(message), str(exc.value)


def test_backstage_reads_every_sources_annotations(tmp_path):
    (tmp_path / "catalog-info.yaml").write_text("""\
kind: Group
metadata: {name: payments}
---
kind: Component
metadata:
  name: checkout-api
  annotations:
    opsgenie.com/team: checkout
    gitlab.com/project-slug: acme/platform/checkout-api
    github.com/project-slug: acme/checkout-api
spec: {owner: payments}
""")
    (service,) = load_backstage_catalog([tmp_path / "catalog-info.yaml"], MORE).services
    assert service.ids == (("opsgenie", "checkout"),)
    assert service.repos == (("github", "acme/checkout-api"), ("gitlab", "acme/platform/checkout-api"))


def test_a_warehouse_written_before_ids_gets_todays_ownership_columns(tmp_path):
    """The ownership tables hold nothing but the file: loading it re-creates them, so a warehouse
    whose tables have the columns of the PagerDuty-only days reads the file into today's columns."""
    from pipelines import warehouse as wh
    from pipelines.ownership import load_ownership_tables

    con = wh.connect(tmp_path / "warehouse.duckdb")
    con.execute("create schema raw")
    con.execute("create table raw.ownership_teams (team_key varchar primary key, team_name varchar not null, "
                "pagerduty_team_id varchar, time_zone varchar not null, business_hours_start varchar not null, "
                "business_hours_end varchar not null, business_isodows varchar not null, adopted_on date)")
    con.execute("create table raw.ownership_service_owners (service_id varchar not null, service_name varchar not null, "
                "team_key varchar not null, valid_from date, valid_to date)")
    con.execute("create table raw.ownership_service_repos (service_id varchar not null, repo varchar not null)")
    con.execute("insert into raw.ownership_service_repos values ('POLD', 'acme/old')")
    wh.ensure_schemas(con)  # create-if-not-exists leaves them as they are
    load_ownership_tables(con, parse_ownership(OLD_KEYS))
    columns = {t: [r[0] for r in con.execute(f"describe raw.{t}").fetchall()]
               for t in ("ownership_teams", "ownership_service_owners", "ownership_service_repos")}
    assert columns == {
        "ownership_teams": ["team_key", "team_name", "source_team_ids", "time_zone", "business_hours_start",
                            "business_hours_end", "business_isodows", "adopted_on"],
        "ownership_service_owners": ["service_key", "source", "service_id", "service_name", "team_key", "valid_from",
                                     "valid_to"],
        "ownership_service_repos": ["source", "service_id", "repo_source", "repo"],
    }
    assert con.execute("select * from raw.ownership_service_repos order by repo").fetchall() == [
        ("pagerduty", "PSVC001", "github", "acme/checkout-api"), ("pagerduty", "PSVC001", "github", "acme/checkout-worker")]
    assert con.execute("select team_key, source_team_ids from raw.ownership_teams").fetchall() == [
        ("payments", '{"pagerduty": "PTEAM01"}')]
