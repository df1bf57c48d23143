"""GitHub's streams: how each reads a night and a backfill repo (the runner does the rest).

- ``deployments``: each repo's deployments, newest first until the bookmark, with the statuses of
  the new ones and of those not final at the last run (table ``github_deployment_statuses``,
  written with them; their rejects are quarantined under ``deployments``);
- ``pull_requests``: each repo's closed pull requests, most recently updated first until the
  bookmark (for lead time).

Both keep one bookmark per repo (``deployments:<repo>``, ``pull_requests:<repo>``). GitHub lists
both newest first without a date filter, so a backfill reaching an old range pays the pages of
everything newer (one request per 100 records). A repo the token cannot see is quarantined
(``repo_unreadable``) and the other repos load.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from pipelines.connectors.github import records as rules
from pipelines.http import ApiError
from pipelines.ingest.contract import PER_REPO, Part, RawTable, Read, Stream
from pipelines.ingest.fetch import fetch_in_order, is_one_repo_problem, unreadable_repo
from pipelines.records import parse_time, split_valid

SOURCE = "github"
DEPLOYMENTS, STATUSES, PULL_REQUESTS = "github_deployments", "github_deployment_statuses", "github_pull_requests"


def in_range(items: Iterable[Any], field: str, since: datetime, until: datetime) -> Iterator[Any]:
    """Records of a newest-first list whose ``field`` is in ``[since, until)``: skip the newer, stop at the older."""
    for item in items:
        when = parse_time(item.get(field)) if isinstance(item, dict) else None
        if when is not None and when >= until:
            continue
        if when is not None and when < since:
            return
        yield item


# ------------------------------------------------------------------------------------- deployments


def read_deployments(r: Read) -> Iterator[Part]:
    """Deployments of each repo, newest first until the bookmark; statuses only for deployments
    that are new or whose latest status was not final at the last run.

    A deployment that was not final at the last run (``in_progress`` tonight, ``success``
    tomorrow) and was created within ``settings.unfinished_deployment_window`` of the bookmark is
    re-read: its statuses, and its record too (GitHub moves its ``updated_at`` with each status),
    by reading the newest-first list a little further back, down to the oldest such deployment.

    ``client.deployments_api`` picks the API: ``graphql`` (the default) reads 100 deployments with
    their statuses a request on a first load, and on a night (a repo with a bookmark) the newest
    BATCH_FIRST of BATCH_REPOS repos in one query, then further pages only for a repo with more new
    ones; ``rest`` lists deployments 100 a request and then asks each wanted deployment for its
    statuses (GitHub has no bulk endpoint). Up to ``client.concurrency`` reads run at once in
    threads; the runner's writes stay in its own thread.
    """
    client, settings = r.client, r.settings
    plans = {}
    for repo in r.repos:  # the bookmarks, read here: the DuckDB connection stays in this thread
        since, hwm = r.window(f"deployments:{repo}")
        unfinished = _unfinished_deployments(r.con, repo, hwm - settings.unfinished_deployment_window) if hwm else {}
        plans[repo] = (since, hwm, unfinished)
    graphql = getattr(client, "deployments_api", "rest") == "graphql"
    # GraphQL: repos with a bookmark (a night) go BATCH_REPOS to a query, BATCH_FIRST deployments each
    # (then their own pages where more are new); a first load reads each repo 100 at a time.
    batched = [repo for repo in r.repos if graphql and plans[repo][1] is not None]
    units = [(repo,) for repo in r.repos if not (graphql and plans[repo][1] is not None)]
    units += [tuple(batched[i:i + BATCH_REPOS]) for i in range(0, len(batched), BATCH_REPOS)]

    def fetch(unit: tuple[str, ...]) -> dict[str, Any]:
        if graphql and plans[unit[0]][1] is not None:
            return _read_deployments_graphql_batch(client, unit, plans)
        read = _read_deployments_graphql if graphql else _read_deployments_rest
        return {repo: read(client, repo, plans[repo][0], plans[repo][2]) for repo in unit}

    for unit, fetched in fetch_in_order(units, fetch, getattr(client, "concurrency", 1)):
        for repo in unit:
            if isinstance(fetched[repo], ApiError):  # the repo could not be read: quarantined, the others load
                yield unreadable_repo(repo, fetched[repo])
                continue
            good, bad, statuses = fetched[repo]
            good_s, bad_s = r.split(STATUSES, statuses)
            yield Part({DEPLOYMENTS: good, STATUSES: good_s}, bookmark=f"deployments:{repo}", extra={"repo": repo},
                       rejects=bad + bad_s, checked=True)


def read_deployments_of_repo(r: Read, repo: str) -> Iterator[Part]:
    """A backfill: the deployments of ``repo`` created in the range, with all their statuses
    (through GraphQL, 100 with their statuses a request, unless the setting says rest)."""
    reader = DeploymentsThroughGraphQL(r.client) if getattr(r.client, "deployments_api", "rest") == "graphql" else r.client
    try:
        found = list(in_range(reader.deployments(repo), "created_at", r.since, r.until))
    except ApiError as exc:
        if not is_one_repo_problem(exc):
            raise
        yield unreadable_repo(repo, exc)
        return
    good, bad = r.split(DEPLOYMENTS, found)
    statuses = [s for d in good for s in reader.deployment_statuses(repo, int(d["id"]))]
    good_s, bad_s = r.split(STATUSES, statuses)
    yield Part({DEPLOYMENTS: good, STATUSES: good_s}, extra={"repo": repo}, rejects=bad + bad_s, checked=True)


def _unfinished_deployments(con, repo: str, created_since: datetime) -> dict[str, datetime]:
    """Deployments of ``repo`` created since ``created_since`` without a final status: {id: created_at}."""
    rows = con.execute(
        """
        select d.id, cast(d.payload ->> 'created_at' as timestamptz) as created_at
        from raw.github_deployments as d
        where d.repo = ?
          and cast(d.payload ->> 'created_at' as timestamptz) >= ?
          and not exists (
            select 1 from raw.github_deployment_statuses as s
            where s.repo = d.repo
              and regexp_extract(s.payload ->> 'deployment_url', '/deployments/([0-9]+)$', 1) = d.id
              and s.payload ->> 'state' in ('success', 'failure', 'error', 'inactive'))
        order by 1
        """,
        [repo, created_since],
    ).fetchall()
    return {str(r[0]): r[1] for r in rows}


DeploymentsRead = tuple[list[dict], list[tuple[dict, str, str]], list[dict]]  # good, rejected, statuses


def _read_deployments_rest(client, repo: str, since: datetime, unfinished: dict[str, datetime]) -> DeploymentsRead | ApiError:
    """REST: the newest-first list down to the bookmark (or the oldest unfinished deployment), then
    one statuses request per wanted deployment. A repo that cannot be listed is returned as its error."""
    scan_since = min([since, *unfinished.values()])
    try:
        new = []
        for d in client.deployments(repo):
            created = parse_time(d.get("created_at")) if isinstance(d, dict) else None
            if created is not None and created < scan_since:
                break  # newest first: everything further is older than the bookmark
            if created is None or created >= since or str(d.get("id")) in unfinished:
                new.append(d)
    except ApiError as exc:
        if not is_one_repo_problem(exc):
            raise
        return exc
    good, bad = split_valid(new, rules.DEPLOYMENT)
    wanted = {int(d["id"]) for d in good} | {int(i) for i in unfinished}
    # One request per deployment (GitHub has no bulk endpoint), a few in flight at a time.
    gone: list[int] = []
    statuses = client.deployment_statuses_many(repo, sorted(wanted), missing=gone)
    for deployment_id in gone:  # deleted since it was listed: quarantined (once), the rest loads
        bad.append(({"id": deployment_id, "repo": repo}, "deployment_gone",
                    "GitHub answered 404 for this deployment's statuses: it was deleted"))
    return good, bad, statuses


def _read_deployments_graphql(client, repo: str, since: datetime,
                              unfinished: dict[str, datetime]) -> DeploymentsRead | ApiError:
    """GraphQL: the same records as :func:`_read_deployments_rest`, 100 deployments with their
    statuses a request. Re-reading unfinished deployments is reading a little further back. A repo
    that cannot be read (NOT_FOUND) is returned as its error."""
    scan_since = min([since, *unfinished.values()])
    try:
        pairs = [(d, statuses) for d, statuses in client.deployments_with_statuses(repo, stop_before=scan_since)]
    except ApiError as exc:
        if not is_one_repo_problem(exc):
            raise
        return exc
    return _select_graphql_read(repo, pairs, since, unfinished)


BATCH_REPOS = 25  # repos per GraphQL query on a night: 25 x (1 + BATCH_FIRST) requests = 3 points
BATCH_FIRST = 10  # deployments per repo in that query; a repo with more new ones reads on, 100 a page


def _read_deployments_graphql_batch(client, unit: tuple[str, ...], plans: dict[str, tuple]) -> dict[str, Any]:
    """A night's GraphQL read of several repos in one query (``GitHubClient.deployments_with_statuses_batch``):
    ``{repo: what _read_deployments_graphql returns}``."""
    scan = {repo: min([plans[repo][0], *plans[repo][2].values()]) for repo in unit}
    got = client.deployments_with_statuses_batch(list(unit), stop_before=scan, first=BATCH_FIRST)
    out: dict[str, Any] = {}
    for repo in unit:
        pairs = got[repo]
        if isinstance(pairs, ApiError):
            if not is_one_repo_problem(pairs):
                raise pairs
            out[repo] = pairs
        else:
            out[repo] = _select_graphql_read(repo, pairs, plans[repo][0], plans[repo][2])
    return out


def _select_graphql_read(repo: str, pairs: list[tuple[dict, list[dict]]], since: datetime,
                         unfinished: dict[str, datetime]) -> DeploymentsRead:
    """From the deployments read down to the scan edge, the new ones and the unfinished ones, with
    their statuses, as the REST path selects them."""
    new = [(d, s) for d, s in pairs
           if parse_time(d.get("created_at")) is None or parse_time(d["created_at"]) >= since
           or str(d.get("id")) in unfinished]
    good, bad = split_valid([d for d, _ in new], rules.DEPLOYMENT)
    good_ids = {id(d) for d in good}
    statuses = [s for d, sts in new if id(d) in good_ids for s in sts]  # as REST: statuses of good ones only
    listed = {str(d.get("id")) for d, _ in pairs}
    for deployment_id in sorted(set(unfinished) - listed, key=int):  # deleted since the last run
        bad.append(({"id": int(deployment_id), "repo": repo}, "deployment_gone",
                    "GitHub no longer lists this deployment: it was deleted"))
    return good, bad, statuses


class DeploymentsThroughGraphQL:
    """A GitHub client whose two deployment calls, ``deployments(repo)`` and then
    ``deployment_statuses(repo, id)`` per deployment (what a backfill makes), are
    answered through GraphQL: the statuses come with their deployments, so a backfill costs one
    request per 100 deployments instead of one more per deployment, and its records have the shapes
    the nightly GraphQL sync stores (a REST re-read would rewrite every row of the overlap in REST's
    shape). Everything else goes to the client."""

    def __init__(self, client) -> None:
        self._client = client
        self._statuses: dict[tuple[str, int], list[dict]] = {}

    def deployments(self, full_name: str) -> Iterable[dict]:
        for deployment, statuses in self._client.deployments_with_statuses(full_name):
            if isinstance(deployment.get("id"), int):
                self._statuses[(full_name, deployment["id"])] = statuses
            yield deployment

    def deployment_statuses(self, full_name: str, deployment_id: int) -> list[dict]:
        cached = self._statuses.pop((full_name, int(deployment_id)), None)
        return cached if cached is not None else self._client.deployment_statuses(full_name, deployment_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)



# ------------------------------------------------------------------------------------- pull requests


def read_pull_requests(r: Read) -> Iterator[Part]:
    """Closed pull requests of each repo, most recently updated first, until the bookmark; up to
    ``client.concurrency`` repos read at once in threads."""
    windows = {repo: r.window(f"pull_requests:{repo}") for repo in r.repos}

    def fetch(repo: str):
        since = windows[repo][0]
        try:
            new = []
            for p in r.client.pulls(repo, state="closed"):
                updated = parse_time(p.get("updated_at")) if isinstance(p, dict) else None
                if updated is not None and updated < since:
                    break
                new.append(p)
            return new
        except ApiError as exc:
            if not is_one_repo_problem(exc):
                raise
            return exc

    for repo, new in fetch_in_order(list(r.repos), fetch, getattr(r.client, "concurrency", 1)):
        if isinstance(new, ApiError):
            yield unreadable_repo(repo, new)
        else:
            yield Part({PULL_REQUESTS: new}, bookmark=f"pull_requests:{repo}", extra={"repo": repo})


def read_pull_requests_of_repo(r: Read, repo: str) -> Iterator[Part]:
    """A backfill: the closed pull requests of ``repo`` updated in the range."""
    try:
        found = list(in_range(r.client.pulls(repo, state="closed"), "updated_at", r.since, r.until))
    except ApiError as exc:
        if not is_one_repo_problem(exc):
            raise
        yield unreadable_repo(repo, exc)
        return
    yield Part({PULL_REQUESTS: found}, extra={"repo": repo})


# ------------------------------------------------------------------------------------- streams

STREAMS = (
    Stream(SOURCE, "deployments", (
        RawTable(DEPLOYMENTS, rules.DEPLOYMENT, "deployments", cursor="created_at", extra=("repo",),
                 description="GitHub deployments of the repos named in the ownership file, newest first until the "
                             "bookmark (GraphQL: 100 with their statuses a request; "
                             "INCIDENT_METRICS_GITHUB_DEPLOYMENTS_API=rest for REST)."),
        RawTable(STATUSES, rules.DEPLOYMENT_STATUS, "deployment_statuses", extra=("repo",),
                 description="Statuses of new deployments and of deployments not final at the last run, in REST's "
                             "shape whichever API read them."),
    ), read_deployments, read_deployments_of_repo, scope=PER_REPO, reads_repos=True),
    Stream(SOURCE, "pull_requests", (
        RawTable(PULL_REQUESTS, rules.PULL_REQUEST, "pulls", cursor="updated_at", extra=("repo",),
                 description="Closed pull requests of the repos in the ownership file (for lead time), most recently "
                             "updated first until the bookmark (the backfill job: those updated in its range)."),
    ), read_pull_requests, read_pull_requests_of_repo, scope=PER_REPO, reads_repos=True),
)
