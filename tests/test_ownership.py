"""ownership.yaml and Backstage catalog loading: values, and errors that name file, line and reason."""

from __future__ import annotations

from datetime import date, time

import pytest

from pipelines.ownership import OwnershipError, load_ownership, parse_ownership

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
        {"service_id": "PSVC001", "service_name": "checkout-api", "team_key": "search", "valid_from": None,
         "valid_to": date(2025, 3, 1)},
        {"service_id": "PSVC001", "service_name": "checkout-api", "team_key": "payments",
         "valid_from": date(2025, 3, 1), "valid_to": None},
    ]
    assert o.repos == ["acme/checkout-api"]
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
    assert (service.service_id, service.name, service.repos, service.owners[0].team_key) == (
        "PSVC001", "checkout-api", ("acme/checkout-api",), "payments")


def test_backstage_unknown_owner_points_at_the_component(tmp_path):
    path = tmp_path / "catalog-info.yaml"
    path.write_text("kind: Group\nmetadata: {name: a}\n---\nkind: Component\nmetadata:\n  name: api\n"
                    "  annotations: {pagerduty.com/service-id: P1}\nspec: {owner: group:nobody}\n")
    with pytest.raises(OwnershipError, match=r"catalog-info.yaml:4: .*unknown team 'nobody'"):
        load_ownership(path)


def test_a_service_can_be_listed_as_unowned_on_purpose():
    o = parse_ownership(GOOD + "  - pagerduty_service_id: PSINK\n    unowned: true\n", "ownership.yaml")
    sink = o.services[-1]
    assert (sink.service_id, sink.unowned, sink.owners) == ("PSINK", True, ())
    last = o.service_owners_frame().iloc[-1]
    assert (last["service_id"], last["service_name"]) == ("PSINK", "PSINK")
    assert last[["team_key", "valid_from", "valid_to"]].isna().all()
    with pytest.raises(OwnershipError, match=r"ownership.yaml:20: service .PSINK.: an unowned service cannot"):
        parse_ownership(GOOD + "  - pagerduty_service_id: PSINK\n    owner: search\n    unowned: true\n",
                        "ownership.yaml")
