"""Four nights against the emulator: a full load, then three incremental nights with changes between.

The emulator serves a generated organisation (3 teams, 6 months) with five days of records after
its clock; advancing the clock one day per night reveals new incidents, resolutions and late
acknowledgements of incidents that were open, new deployments and statuses that turn final.

Asserted:
* the nights really bring those changes (so the comparison below is not vacuous);
* after night 4 the warehouse equals a fresh full load of the same emulator state, table by
  table. The only differences allowed are the ones the API itself made to records the contract
  does not re-read (each is checked to be exactly that), see ``_explained``;
* running night 4 again leaves every table identical;
* the requests of each incremental night are exactly what its changes call for (open incidents
  re-read, one page per list; GitHub deployments come with their statuses, so the new and
  unfinished deployments of up to 25 repos cost one GraphQL query), not history.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta

import pytest

from pipelines.connectors.github.streams import BATCH_FIRST, BATCH_REPOS
from pipelines.records import parse_time
from tests.incremental_helpers import (
    deployment_in_flight,
    diff_states,
    incident_open,
    incident_unacknowledged,
    night,
    pick_clock,
    small_org,
    start_emulator,
    warehouse_state,
    write_ownership,
)

NIGHTS = 4
REWIND = timedelta(hours=1)
UNFINISHED_WINDOW = timedelta(days=7)
# GitHub embeds the repository in each pull request; its updated_at / pushed_at move with the
# repository, not with the pull request, so a pull request not re-read keeps the old values.
PR_REPO_VOLATILE = {"base.repo.pushed_at", "base.repo.updated_at", "head.repo.pushed_at", "head.repo.updated_at"}
FINAL = {"success", "failure", "error", "inactive"}


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("incremental")
    org = small_org(seed=11, future_days=NIGHTS + 1)
    srv = start_emulator(org)
    ownership = write_ownership(org, tmp)
    data = tmp / "incremental"
    out = {"org": org, "requests": [], "stats": [], "states": [], "clocks": []}
    try:
        # Nights land while something is in flight, so the next night has old records to update:
        # night 2 during a deployment (final status tomorrow), night 3 while an incident waits for
        # its acknowledgement (acknowledged and resolved tomorrow), night 4 while one is open.
        clocks = [srv.now()]
        clocks.append(pick_clock(org, clocks[-1], deployment_in_flight))
        clocks.append(pick_clock(org, clocks[-1], incident_unacknowledged))
        clocks.append(pick_clock(org, clocks[-1], incident_open))
        for n in range(NIGHTS):
            srv.set_now(clocks[n])
            out["clocks"].append(srv.now())
            out["requests"].append(night(srv, data, ownership))
            out["stats"].append(srv.stats())
            out["states"].append(warehouse_state(data / "warehouse.duckdb"))
        out["repeat_requests"] = night(srv, data, ownership)
        out["repeated"] = warehouse_state(data / "warehouse.duckdb")
        out["fresh_requests"] = night(srv, tmp / "fresh", ownership)
        out["fresh_path"] = tmp / "fresh" / "warehouse.duckdb"
        out["incremental_path"] = data / "warehouse.duckdb"
        print(f"\nrequests per night: {out['requests']} (night {NIGHTS} again: {out['repeat_requests']}, "
              f"fresh full load of the night-{NIGHTS} state: {out['fresh_requests']})")
        yield out
    finally:
        srv.stop()


# ----------------------------------------------------------------------------------- helpers


def _incidents(state) -> dict[str, dict]:
    return {k: v[0] for k, v in state["raw.pagerduty_incidents"].items()}


def _hwm(state, source: str, stream: str):
    for row in state["raw.sync_state"].values():
        if row[0] == source and row[1] == stream:
            return row[2]
    return None


def _deployments(state) -> dict[str, tuple[str, object]]:
    return {k: (v[1][0], parse_time(v[0]["created_at"])) for k, v in state["raw.github_deployments"].items()}


def _final_deployments(state) -> set[str]:
    return {p["deployment_url"].rsplit("/", 1)[1] for p, _ in state["raw.github_deployment_statuses"].values()
            if p["state"] in FINAL}


def _routes(stats) -> Counter:
    return Counter({k.split(" ", 2)[2]: v["requests"] for k, v in stats["by_route"].items()})


# ----------------------------------------------------------------------------------- tests


def test_the_nights_bring_new_records_and_changes_to_old_ones(nights):
    states = nights["states"]
    for n in range(1, NIGHTS):
        before, after = _incidents(states[n - 1]), _incidents(states[n])
        assert len(after) > len(before), f"night {n + 1}: no new incidents"
    new_deploys = set(states[-1]["raw.github_deployments"]) - set(states[0]["raw.github_deployments"])
    assert new_deploys, "no new deployments over the incremental nights"
    # over the three incremental nights, each kind of change happens
    totals = Counter()
    for n in range(1, NIGHTS):
        before, after = _incidents(states[n - 1]), _incidents(states[n])
        totals["resolved"] += sum(1 for i, p in before.items() if p["status"] != "resolved" and after[i]["status"] == "resolved")
        totals["late_acks"] += sum(1 for e, (p, _) in states[n]["raw.pagerduty_log_entries"].items()
                                   if e not in states[n - 1]["raw.pagerduty_log_entries"]
                                   and p["type"] == "acknowledge_log_entry" and p["incident"]["id"] in before)
        was_unfinished = set(states[n - 1]["raw.github_deployments"]) - _final_deployments(states[n - 1])
        totals["deploys_finished"] += len(was_unfinished & _final_deployments(states[n]))
    assert totals["resolved"] > 0 and totals["late_acks"] > 0 and totals["deploys_finished"] > 0, totals


def test_running_a_night_twice_changes_nothing(nights):
    assert diff_states(nights["states"][-1], nights["repeated"]) == {}
    assert nights["repeated"]["raw.pagerduty_incidents"]  # not vacuously equal


def _explained(org, clock, incremental, fresh):
    """Check every difference between the incremental and the fresh warehouse is one the API made
    to a record that the sync contract does not re-read; return the explained differences."""
    diff = diff_states(incremental, fresh)
    explained = {}
    prs = diff.pop("raw.github_pull_requests", None)
    if prs:
        assert not prs["missing"] and not prs["extra"], prs
        assert all(set(paths) <= PR_REPO_VOLATILE for paths in prs["changed"].values()), prs["changed"]
        explained["raw.github_pull_requests"] = f"{len(prs['changed'])} rows: embedded repo updated_at/pushed_at"
    incidents = diff.pop("raw.pagerduty_incidents", None)
    if incidents:
        # A note added to a resolved incident moves its updated_at; the API has no filter that finds it.
        assert not incidents["missing"] and not incidents["extra"], incidents
        by_id = {i.id: i for i in org.incidents}
        for incident_id, paths in incidents["changed"].items():
            assert paths == ["updated_at"], (incident_id, paths)
            old = parse_time(incremental["raw.pagerduty_incidents"][incident_id][0]["updated_at"])
            inc = by_id[incident_id]
            assert inc.resolved_at is not None and inc.resolved_at <= old
            assert any(e.type == "annotate_log_entry" and old < e.created_at <= clock for e in inc.log_entries)
        explained["raw.pagerduty_incidents"] = f"{len(incidents['changed'])} rows: updated_at moved by a late note"
    return diff, explained


def test_night_four_equals_a_fresh_full_load(nights):
    org, clock = nights["org"], nights["clocks"][-1]
    incremental = warehouse_state(nights["incremental_path"], quarantine_volatile=PR_REPO_VOLATILE)
    fresh = warehouse_state(nights["fresh_path"], quarantine_volatile=PR_REPO_VOLATILE)
    rest, explained = _explained(org, clock, incremental, fresh)
    if "raw.pagerduty_incidents" in explained:  # the staging copy of updated_at follows raw
        ignore = {"staging.stg_pagerduty__incidents": {"updated_at"}}
        incremental = warehouse_state(nights["incremental_path"], ignore_columns=ignore, quarantine_volatile=PR_REPO_VOLATILE)
        fresh = warehouse_state(nights["fresh_path"], ignore_columns=ignore, quarantine_volatile=PR_REPO_VOLATILE)
        rest, _ = _explained(org, clock, incremental, fresh)
    print(f"\nincremental vs fresh full load, explained differences: {explained or 'none'}")
    assert rest == {}, rest
    # every table holds data, and staging and marts are equal without any allowance
    for table in ("raw.pagerduty_incidents", "raw.pagerduty_log_entries", "raw.github_deployments",
                  "raw.github_deployment_statuses", "raw.github_pull_requests", "marts.fct_incidents",
                  "marts.fct_deployments", "marts.team_baselines", "raw.sync_state"):
        assert incremental[table], table
        assert incremental[table] == fresh[table] or table.startswith("raw."), table


def test_bookmarks_are_data_times_that_only_move_forward(nights):
    states, clocks = nights["states"], nights["clocks"]
    for n, state in enumerate(states):
        incidents = _incidents(state)
        newest = max(parse_time(p["created_at"]) for p in incidents.values())
        assert _hwm(state, "pagerduty", "incidents") == newest
        entries = [parse_time(p["created_at"]) for p, _ in state["raw.pagerduty_log_entries"].values()]
        assert _hwm(state, "pagerduty", "log_entries") == max(entries) <= clocks[n]
        if n:
            for row in states[n - 1]["raw.sync_state"].values():
                assert _hwm(state, row[0], row[1]) >= row[2]


def test_incremental_nights_cost_what_their_changes_call_for(nights):
    states, stats, requests = nights["states"], nights["stats"], nights["requests"]
    repos = {row[1].split(":", 1)[1] for row in states[0]["raw.sync_state"].values() if row[1].startswith("deployments:")}
    lines = [f"night 1 (full load): {requests[0]} requests"]
    for n in range(1, NIGHTS):
        prev, cur, routes = states[n - 1], states[n], _routes(stats[n])
        # open incidents created before the re-read edge are re-read one by one, nothing else is
        edge = _hwm(prev, "pagerduty", "incidents") - REWIND
        still_open = [i for i, p in _incidents(prev).items()
                      if p["status"] != "resolved" and parse_time(p["created_at"]) < edge]
        assert routes["/incidents/{id}"] == len(still_open)
        new_incidents = len(_incidents(cur)) - len(_incidents(prev))
        new_entries = len(cur["raw.pagerduty_log_entries"]) - len(prev["raw.pagerduty_log_entries"])
        assert routes["/incidents"] <= 1 + new_incidents // 100
        assert routes["/log_entries"] <= 1 + new_entries // 100
        # deployments re-read with their statuses: from the bookmark (minus the rewind) and recent
        # unfinished ones; the newest-first GraphQL page of 100 reaches back past all of them
        prev_deps, cur_deps, prev_final = _deployments(prev), _deployments(cur), _final_deployments(prev)
        wanted = set()
        for dep_id, (repo, created) in cur_deps.items():
            hwm = _hwm(prev, "github", f"deployments:{repo}")
            if created >= hwm - REWIND:
                wanted.add(dep_id)
            elif dep_id in prev_deps and dep_id not in prev_final and created >= hwm - UNFINISHED_WINDOW:
                wanted.add(dep_id)
        assert len(wanted) < len(cur_deps) / 10
        # GraphQL: one query for up to BATCH_REPOS repos, BATCH_FIRST newest deployments (with their
        # statuses) each; a repo whose BATCH_FIRST newest all lie within its re-read edge (the bookmark
        # minus the rewind, or its oldest unfinished deployment) reads on, 100 a page, past that edge.
        # (REST asked a list page per repo plus one statuses request per wanted deployment.)
        pages = math.ceil(len(repos) / BATCH_REPOS)
        for repo in repos:
            hwm = _hwm(prev, "github", f"deployments:{repo}")
            unfinished = [created for dep_id, (r, created) in prev_deps.items()
                          if r == repo and dep_id not in prev_final and created >= hwm - UNFINISHED_WINDOW]
            edge = min([hwm - REWIND, *unfinished])
            created = [c for r, c in cur_deps.values() if r == repo]
            within = sum(1 for c in created if c >= edge)
            if within >= BATCH_FIRST and len(created) > BATCH_FIRST:
                pages += math.ceil((within - BATCH_FIRST + (len(created) > within)) / 100)
        assert routes["/graphql"] == pages
        assert routes["/repos/{owner}/{repo}/deployments"] == 0
        assert routes["/repos/{owner}/{repo}/deployments/{deployment_id}/statuses"] == 0
        assert routes["/repos/{owner}/{repo}/pulls"] <= len(repos) + 1
        # and nothing else: the night is the directory lists plus the counts pinned above. (This used
        # to be "under a fifth of the full load", which held while the full load paid one REST request
        # per deployment for its statuses; through GraphQL the full load itself is a few dozen
        # requests, and a page of pull requests per repo is paid every night.)
        assert routes["/teams"] == routes["/services"] == 1
        assert requests[n] == sum(routes[r] for r in ("/teams", "/services", "/incidents", "/log_entries",
                                                      "/incidents/{id}", "/graphql", "/repos/{owner}/{repo}/pulls"))
        lines.append(f"night {n + 1}: {requests[n]} requests = {routes['/incidents/{id}']} open incidents re-read, "
                     f"{routes['/graphql']} GraphQL queries for {len(wanted)} deployments and their statuses, "
                     f"{new_incidents} new incidents, {new_entries} new log entries, "
                     f"{sum(routes.values()) - routes['/incidents/{id}'] - routes['/graphql']} list pages")
    print("\n" + "\n".join(lines))
