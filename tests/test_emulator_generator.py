"""The synthetic-organisation generator: determinism, ground truth, realism of the distributions."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from datetime import date

import numpy as np
import yaml

from emulator.generator import GeneratorConfig, generate_organisation, write_ground_truth, write_ownership
from emulator.model import LOG_ENTRY_TYPES
from tests.emulator_helpers import END, generated_org


def test_same_seed_gives_identical_organisation_and_other_seed_differs():
    cfg = GeneratorConfig(end=END, n_teams=4, months=8)
    a, b = generate_organisation(11, cfg), generate_organisation(11, cfg)
    assert dataclasses.asdict(a) == dataclasses.asdict(b)
    c = generate_organisation(12, cfg)
    assert [i.id for i in c.incidents] != [i.id for i in a.incidents]


def test_default_size():
    org = generate_organisation(3, GeneratorConfig(end=END))
    assert 4000 <= len(org.incidents) <= 6500
    assert 30_000 <= sum(len(i.log_entries) for i in org.incidents) <= 55_000
    assert len(org.teams) == 10 and len(org.services) == 30
    assert org.now.isoformat() == "2026-11-01T00:00:00+00:00"
    assert all(i.created_at <= org.now for i in org.incidents)  # future_days=0: nothing after the clock


def test_every_pull_request_is_opened_before_it_merges_whatever_the_end_date():
    # The history start moves with the end date; a pull request merged before it once got a creation
    # time clamped to after its merge, which the pipeline rightly quarantined (merged_before_created).
    for day in range(1, 32, 3):
        org = generate_organisation(7, GeneratorConfig(end=date(2026, 12, day), n_teams=3, months=2))
        merged = [p for p in org.pulls if p.merged_at is not None]
        assert merged and all(p.created_at <= p.merged_at for p in merged)


def test_ground_truth_counts_match_the_organisation():
    org = generated_org()
    gt = json.loads(json.dumps(org.ground_truth))  # JSON-serialisable
    assert gt["seed"] == 7 and gt["config"]["n_teams"] == 10 and gt["config"]["sigma"] == 1.25
    svc = {s.id: s for s in org.services}
    per_team = Counter(svc[i.service_id].owner_on(i.created_at.date()) for i in org.incidents)
    assert {k: v["counts"]["incidents"] for k, v in gt["teams"].items()} == {t.key: per_team[t.key] for t in org.teams}
    totals = gt["totals"]
    assert totals["incidents"] == len(org.incidents)
    assert totals["log_entries"] == sum(len(i.log_entries) for i in org.incidents)
    assert totals["merged"] == sum(i.resolve_reason == "merge_resolve_reason" for i in org.incidents)
    assert totals["auto_resolved"] == sum(i.auto_resolved for i in org.incidents)
    assert totals["deployments"] == len(org.deployments)
    assert totals["pulls"] == len(org.pulls)
    for repo, counts in gt["per_repo"].items():
        assert counts["deployments"] == sum(d.repo == repo for d in org.deployments)
    for t in org.teams:
        assert gt["teams"][t.key]["adopted_on"] == (t.adopted_on.isoformat() if t.adopted_on else None)


def test_durations_are_heavy_tailed_with_the_configured_log_sd():
    org = generated_org()
    svc = {s.id: s for s in org.services}
    by_team: dict[str, list[float]] = {}
    for inc in org.incidents:
        if inc.resolved_at is None or inc.auto_resolved or inc.resolve_reason:
            continue
        key = svc[inc.service_id].owner_on(inc.created_at.date())
        team = org.team_by_key(key)
        if team.adopted_on and inc.created_at.date() >= team.adopted_on:
            continue  # pre-adoption only: one distribution per team
        by_team.setdefault(key, []).append(math.log((inc.resolved_at - inc.created_at).total_seconds() / 60))
    resid = np.concatenate([np.asarray(v) - np.mean(v) for v in by_team.values()])
    assert abs(resid.std(ddof=1) - 1.25) < 0.1
    minutes = np.exp(np.concatenate([np.asarray(v) for v in by_team.values()]))
    assert 40 < np.median(minutes) < 90
    assert np.mean(minutes) > 1.5 * np.median(minutes)  # heavy right tail
    assert np.quantile(minutes, 0.99) > 10 * np.median(minutes)  # exp(2.33 * 1.25) ~ 18


def test_realism_features_are_present():
    org = generated_org()
    gt = org.ground_truth
    assert any(len(s.owners) > 1 for s in org.services)  # at least one service changes owner
    assert gt["service_moves"] and gt["new_services"]
    assert gt["totals"]["merged"] > 0 and all(i.merged_into for i in org.incidents if i.resolve_reason)
    assert gt["totals"]["auto_resolved"] > 0
    auto = next(i for i in org.incidents if i.auto_resolved)
    resolve = [e for e in auto.log_entries if e.type == "resolve_log_entry"][0]
    assert (resolve.agent_type, resolve.channel_type) == ("service_reference", "timeout")
    assert (auto.resolved_at - auto.created_at).total_seconds() == 4 * 3600
    assert gt["totals"]["open_at_now"] > 0
    open_one = next(i for i in org.incidents if i.resolved_at is None)
    assert not any(e.type == "resolve_log_entry" for e in open_one.log_entries)
    assert gt["totals"]["retriggers"] > 0 and gt["totals"]["deploy_caused_incidents"] > 0
    types = Counter(e.type for i in org.incidents for e in i.log_entries)
    assert set(types) == set(LOG_ENTRY_TYPES)  # every documented type we emit, nothing else
    adopters = [t for t in org.teams if t.adopted_on]
    assert 0 < len(adopters) < len(org.teams)  # some teams never adopt
    ratios = {v["duration_ratio"] for v in gt["teams"].values() if v["adopts"]}
    assert {0.5, 0.7, 1.0} <= ratios
    start = date(2024, 11, 1)
    for t in adopters:  # months 8..18 of the 24-month history
        months = (t.adopted_on.year - start.year) * 12 + t.adopted_on.month - start.month
        assert 8 <= months <= 18
    assert len({t.time_zone for t in org.teams}) == len(org.teams)
    envs = Counter(d.environment for d in org.deployments)
    assert envs["production"] > envs["staging"] > 0
    assert any(not d.statuses for d in org.deployments)
    assert any(d.statuses and d.statuses[-1].state == "failure" for d in org.deployments)
    assert any(p.closed_at and p.merged_at is None for p in org.pulls)
    assert any(d.creator_login is None for d in org.deployments)


def test_adoption_effect_is_visible_in_the_data():
    org = generated_org()
    gt = org.ground_truth["teams"]
    svc = {s.id: s for s in org.services}
    team = next(t for t in org.teams if gt[t.key]["duration_ratio"] == 0.5 and gt[t.key]["ramp_months"] == 0)
    before, after = [], []
    for inc in org.incidents:
        if inc.resolved_at is None or inc.auto_resolved or inc.resolve_reason:
            continue
        if svc[inc.service_id].owner_on(inc.created_at.date()) != team.key:
            continue
        minutes = math.log((inc.resolved_at - inc.created_at).total_seconds() / 60)
        (after if inc.created_at.date() >= team.adopted_on else before).append(minutes)
    ratio = math.exp(np.mean(after) - np.mean(before))
    assert 0.3 < ratio < 0.8


def test_ownership_and_ground_truth_files(tmp_path):
    org = generated_org(small=True)
    own = write_ownership(org, tmp_path / "ownership.yaml")
    doc = yaml.safe_load(own.read_text())
    assert doc == org.ownership_document()
    assert {t["key"] for t in doc["teams"]} == {t.key for t in org.teams}
    moved = [s for s in doc["services"] if len(s["owners"]) > 1]
    assert moved and moved[0]["owners"][0]["from"] is None
    gt = write_ground_truth(org, tmp_path / "truth" / "ground_truth.json")
    assert json.loads(gt.read_text()) == json.loads(json.dumps(org.ground_truth))


def test_log_entries_are_consistent_with_incident_fields():
    org = generated_org(small=True)
    for inc in org.incidents:
        ents = inc.log_entries
        assert ents[0].type == "trigger_log_entry" and ents[0].created_at == inc.created_at
        assert ents[1].type == "assign_log_entry" and ents[1].created_at == inc.created_at
        assert [e.created_at for e in ents] == sorted(e.created_at for e in ents)
        acks = [e for e in ents if e.type == "acknowledge_log_entry"]
        assert (acks[0].created_at if acks else None) == inc.acknowledged_at
        resolves = [e for e in ents if e.type == "resolve_log_entry"]
        if inc.resolved_at is None:
            assert not resolves
        else:
            assert len(resolves) == 1 and resolves[0].created_at == inc.resolved_at
        assert len({e.id for e in ents}) == len(ents)
        assert len(inc.id) == 7 and inc.id.startswith("P") and inc.id.isalnum() and inc.id.isupper()


def test_large_organisations_get_unique_user_names_and_logins():
    # 80 teams x 6 users = 480 users: more than the 24 x 18 = 432 first/last pairings the
    # generator draws from (it used to loop for ever once every pairing was taken).
    cfg = GeneratorConfig(end=END, n_teams=80, months=1, incidents_per_team_month=1.0, deploys_per_repo_week=0.1)
    org = generate_organisation(5, cfg)
    assert len(org.users) == 480
    assert len({u.name for u in org.users}) == 480
    assert len({u.github_login for u in org.users}) == 480
    assert len({u.email for u in org.users}) == 480
    assert sum(u.name.endswith("2") for u in org.users) == 480 - 432
