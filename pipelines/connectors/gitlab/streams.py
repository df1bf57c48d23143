"""GitLab's streams: how each reads a night and a backfill project (the runner does the rest).

- ``deployments``: each project's deployments updated since the bookmark (GitLab moves
  ``updated_at`` with every status change, so a deployment running last night and finished
  tonight comes again with its new status: no re-read of unfinished ones is needed);
- ``environments``: each project's environments with their tier, read in full every run (a
  handful a project; the production test of a deployment needs its environment's tier);
- ``merge_requests``: each project's merged merge requests updated since the bookmark (for lead
  time; REST has no ``merged_after``, and a merge updates the merge request).

The projects are the ownership file's GitLab repos (``{gitlab: group/sub/project}``). Deployments
and merge requests keep one bookmark per project (``deployments:<project>``), so a night with
no new data costs one request per project per stream; a backfill reads a project's range with
the server's ``updated_after`` / ``updated_before`` filters (the pages of that range only). A
project the token cannot see is quarantined (``repo_unreadable``) and the others load.
"""

from __future__ import annotations

from collections.abc import Iterator

from pipelines.connectors.gitlab import records as rules
from pipelines.http import ApiError
from pipelines.ingest.contract import FULL, PER_REPO, Part, RawTable, Read, Stream
from pipelines.ingest.fetch import fetch_in_order, is_one_repo_problem, unreadable_repo

SOURCE = rules.SOURCE
DEPLOYMENTS, ENVIRONMENTS, MERGE_REQUESTS = "gitlab_deployments", "gitlab_environments", "gitlab_merge_requests"


def _per_project(r: Read, read_one, stream: str, table: str, bookmarked: bool) -> Iterator[Part]:
    """Read every project, up to ``client.concurrency`` at once in threads (the runner's writes stay
    in this thread), one part each; a project that cannot be read is quarantined."""
    windows = {p: r.window(f"{stream}:{p}") for p in r.repos} if bookmarked else {}

    def fetch(project: str):
        try:
            return read_one(project, windows[project][0] if bookmarked else None)
        except ApiError as exc:
            if not is_one_repo_problem(exc):
                raise
            return exc

    for project, got in fetch_in_order(list(r.repos), fetch, getattr(r.client, "concurrency", 1)):
        if isinstance(got, ApiError):
            yield unreadable_repo(project, got)
        else:
            yield Part({table: got}, bookmark=f"{stream}:{project}" if bookmarked else None, extra={"repo": project})


def read_deployments(r: Read) -> Iterator[Part]:
    return _per_project(r, lambda p, since: list(r.client.deployments(p, updated_after=since)),
                        "deployments", DEPLOYMENTS, bookmarked=True)


def read_deployments_of_project(r: Read, project: str) -> Iterator[Part]:
    """A backfill: the deployments of ``project`` updated in the range."""
    yield from _one(r, project, lambda: list(r.client.deployments(project, updated_after=r.since,
                                                                    updated_before=r.until)), DEPLOYMENTS)


def read_environments(r: Read) -> Iterator[Part]:
    return _per_project(r, lambda p, _: r.client.environments(p), "environments", ENVIRONMENTS, bookmarked=False)


def read_merge_requests(r: Read) -> Iterator[Part]:
    return _per_project(r, lambda p, since: list(r.client.merge_requests(p, updated_after=since)),
                        "merge_requests", MERGE_REQUESTS, bookmarked=True)


def read_merge_requests_of_project(r: Read, project: str) -> Iterator[Part]:
    """A backfill: the merged merge requests of ``project`` updated in the range."""
    yield from _one(r, project, lambda: list(r.client.merge_requests(project, updated_after=r.since,
                                                                       updated_before=r.until)), MERGE_REQUESTS)


def _one(r: Read, project: str, read, table: str) -> Iterator[Part]:
    try:
        found = read()
    except ApiError as exc:
        if not is_one_repo_problem(exc):
            raise
        yield unreadable_repo(project, exc)
        return
    yield Part({table: found}, extra={"repo": project})


STREAMS = (
    Stream(SOURCE, "deployments", (
        RawTable(DEPLOYMENTS, rules.DEPLOYMENT, "deployments", cursor="updated_at", extra=("repo",),
                 description="GitLab deployments of the projects named in the ownership file, updated since the "
                             "bookmark (100 a page; the backfill job: those updated in its range)."),
    ), read_deployments, read_deployments_of_project, scope=PER_REPO, reads_repos=True),
    Stream(SOURCE, "environments", (
        RawTable(ENVIRONMENTS, rules.ENVIRONMENT, "environments", extra=("repo",),
                 description="GitLab environments of those projects with their tier (production is tier = production), "
                             "read in full every run."),
    ), read_environments, scope=FULL, reads_repos=True),
    Stream(SOURCE, "merge_requests", (
        RawTable(MERGE_REQUESTS, rules.MERGE_REQUEST, "merge_requests", cursor="updated_at", extra=("repo",),
                 description="Merged GitLab merge requests of those projects (for lead time), updated since the "
                             "bookmark (the backfill job: those updated in its range)."),
    ), read_merge_requests, read_merge_requests_of_project, scope=PER_REPO, reads_repos=True),
)
