"""A small GitLab REST v4 client: deployments, environments and merged merge requests of a project.

Projects are named by path (``group/sub/project``, sent URL-encoded) or by numeric id. Requests
go through :class:`pipelines.http.HttpClient` (retries, 429 and ``Retry-After``, paced from the
``RateLimit-Remaining`` / ``RateLimit-Reset`` headers, a redacted ``PRIVATE-TOKEN``).

Never deep offsets: GitLab refuses offsets past 50,000 where it has keyset pagination, and
leaves out the totals above 10,000 records. So:

- deployments and merge requests are read by what changed: ``updated_after`` (and, in a backfill,
  ``updated_before``), which GitLab allows only with ``order_by=updated_at``, so by offset pages;
  before an offset would pass 50,000 the read starts again from the ``updated_at`` of the last
  record it has, less a second (the records of those seconds come again; the raw upsert keeps one
  of each; none is skipped whether GitLab's ``updated_after`` includes its bound or not);
- environments are a handful a project: offset pages too.

Keyset pagination (``pagination=keyset&order_by=id``) is therefore not used: it cannot be combined
with the ``updated_at`` filters, merge requests do not have it, and an endpoint without it costs a
refused request (405) to find out.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from pipelines.http import ApiError, HttpClient, SourceClient
from pipelines.records import parse_time

DEFAULT_GITLAB_API_URL = "https://gitlab.com/api/v4"
PER_PAGE = 100  # GitLab's maximum
MAX_OFFSET = 50_000  # GitLab's plan limit on offset pagination


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class GitLabClient(SourceClient):
    def __init__(self, base_url: str | None, token: str, *, ca_bundle: str | None = None, concurrency: int = 4,
                 timeout: float = 30.0, sleep=time.sleep, per_page: int = PER_PAGE, max_offset: int = MAX_OFFSET,
                 **http_options: Any) -> None:
        """``per_page`` and ``max_offset`` are GitLab's; tests lower them to reach the edges with
        few records. ``http_options`` go to :class:`HttpClient` (max_retries, retry_budget, ...)."""
        if not token:
            raise ValueError("GitLab token is empty: set GITLAB_TOKEN")
        self.concurrency = max(1, int(concurrency))
        self.per_page = per_page
        self.max_offset = max_offset
        self._http = HttpClient(
            base_url or DEFAULT_GITLAB_API_URL,
            auth_header=token,
            auth_header_name="PRIVATE-TOKEN",
            quota_headers="ratelimit",  # RateLimit-Remaining / RateLimit-Reset (epoch seconds)
            delta_reset_header=None,  # GitLab's RateLimit-Reset is that epoch, not seconds from now
            source="GitLab",
            token_env_var="GITLAB_TOKEN",
            url_env_var="GITLAB_API_URL",
            auth_hint="self-managed GitLab uses https://HOST/api/v4",
            timeout=timeout,
            rate_per_minute=None,  # paced from the RateLimit headers instead (gitlab.com: 2,000 a minute)
            concurrency=self.concurrency,
            ca_bundle=ca_bundle,
            sleep=sleep,
            default_headers={"Accept": "application/json"},
            **http_options,
        )

    @staticmethod
    def project_ref(project: str | int) -> str:
        """How a project goes into a URL: its numeric id, or its full path URL-encoded."""
        text = str(project).strip()
        return text if text.isdigit() else quote(text, safe="")

    # ------------------------------------------------------------------ public API

    def project(self, project: str | int) -> dict:
        return self._http.json(self._http.get(f"/projects/{self.project_ref(project)}", stream="projects"))

    def deployments(self, project: str | int, *, updated_after: datetime | None = None,
                    updated_before: datetime | None = None) -> Iterator[dict]:
        """Every deployment of the project updated in ``[updated_after, updated_before)`` (GitLab
        moves ``updated_at`` with each status change, so a night reads what changed)."""
        path = f"/projects/{self.project_ref(project)}/deployments"
        params = {k: _iso(v) for k, v in (("updated_after", updated_after), ("updated_before", updated_before)) if v}
        yield from self._pages(path, params, stream="deployments")

    def environments(self, project: str | int) -> list[dict]:
        """The project's environments, with their ``tier`` (GitLab 13.10 and later)."""
        return list(self._pages(f"/projects/{self.project_ref(project)}/environments", {}, stream="environments",
                                order_by=None))

    def merge_requests(self, project: str | int, *, updated_after: datetime | None = None,
                       updated_before: datetime | None = None) -> Iterator[dict]:
        """Merged merge requests updated in ``[updated_after, updated_before)``. REST has
        ``updated_after`` but no ``merged_after``; merging updates a merge request, so a night's
        ``updated_after`` finds every merge since (and the few merged ones edited since)."""
        path = f"/projects/{self.project_ref(project)}/merge_requests"
        params = {"state": "merged",
                  **{k: _iso(v) for k, v in (("updated_after", updated_after), ("updated_before", updated_before)) if v}}
        yield from self._pages(path, params, stream="merge_requests")

    # ------------------------------------------------------------------ paging

    def _pages(self, path: str, params: dict[str, str], *, stream: str,
               order_by: str | None = "updated_at") -> Iterator[dict]:
        """Offset pages in ``order_by`` order (None: the endpoint's own); ordered by ``updated_at``,
        before the offset would pass ``max_offset`` the read starts again a second before the last
        ``updated_at`` read. An empty page that says more follow is asked for once more, then fails
        the read (never a silent end)."""
        query = {**params, **({"order_by": order_by, "sort": "asc"} if order_by else {}), "per_page": self.per_page}
        page, empty_again = 1, False
        while True:
            resp = self._http.get(path, {**query, "page": page}, stream=stream)
            items = self._items(resp, path)
            self._http.add_records(stream, len(items))
            yield from items
            next_page = (resp.headers.get("x-next-page") or "").strip()
            if not next_page:
                return
            if not items:
                if empty_again:
                    raise ApiError(f"GitLab {path}: page {page} came back empty twice while x-next-page said "
                                   f"{next_page}; the rest of the list cannot be read", endpoint=path,
                                   status=resp.status_code)
                empty_again = True
                continue  # the same page once more
            empty_again = False
            if int(next_page) * self.per_page > self.max_offset:  # the page after would end past the cap
                if order_by != "updated_at":
                    raise ApiError(f"GitLab {path}: more than {self.max_offset} records", endpoint=path)
                last = parse_time(items[-1].get("updated_at"))
                restart = _iso(last - timedelta(seconds=1)) if last else None
                if restart is None or restart <= query.get("updated_after", ""):
                    raise ApiError(f"GitLab {path}: more than {self.max_offset} records were updated within a second "
                                   f"of {items[-1].get('updated_at')}; they cannot be paged by offset", endpoint=path)
                query["updated_after"], page = restart, 1
            else:
                page = int(next_page)

    def _items(self, resp, path: str) -> list[dict]:
        data = self._http.json(resp)
        if not isinstance(data, list):
            raise ApiError(f"GitLab {path} answered {type(data).__name__}, not a list", endpoint=path,
                           status=resp.status_code)
        return data
