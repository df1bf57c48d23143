"""GitHub REST client: repositories, deployments, deployment statuses and pull requests.

- Pages are followed through the ``Link`` header's ``rel="next"`` only (page URLs are never built
  here; ``rel="last"`` may be missing; no ``Link`` header means one page). ``per_page=100``.
- Generators fetch the next page only when the caller iterates past the current one, so a caller
  that stops at its bookmark costs no further requests.
- Conditional requests: an in-memory ETag cache per URL sends ``If-None-Match``; a 304 reuses the
  cached body (it costs no primary quota) and counts in ``stats[stream].not_modified``. The cache is
  per client, hence per token (GitHub's ETags depend on the token).
- A 204 is an empty list. A 404 on a repository path means the repository is missing or the token
  cannot see it; a 422 "pagination is limited" becomes a clear :class:`ApiError`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Iterator
from urllib.parse import quote

from requests.models import PreparedRequest
from requests.utils import parse_header_links

from .http import ApiError, HttpClient, SourceClient

logger = logging.getLogger("incident_metrics.sources")

DEFAULT_GITHUB_API_URL = "https://api.github.com"
EMPTY_PAGE_RETRIES = 2  # an empty page that links to a next one is asked again this many times
PER_PAGE = 100
ACCEPT = "application/vnd.github+json"


@dataclass
class _Cached:
    etag: str
    body: bytes
    link: str | None


class ETagCache:
    """URL -> (ETag, body, Link) with a byte budget (least recently used entries go first)."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, _Cached] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, url: str) -> _Cached | None:
        with self._lock:
            entry = self._entries.get(url)
            if entry is not None:
                self._entries.move_to_end(url)
            return entry

    def put(self, url: str, entry: _Cached) -> None:
        with self._lock:
            old = self._entries.pop(url, None)
            if old is not None:
                self._bytes -= len(old.body)
            if len(entry.body) > self.max_bytes:
                return
            self._entries[url] = entry
            self._bytes += len(entry.body)
            while self._bytes > self.max_bytes and self._entries:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= len(dropped.body)

    def __len__(self) -> int:
        return len(self._entries)


def _split_full_name(full_name: str) -> tuple[str, str]:
    parts = full_name.strip().split("/") if isinstance(full_name, str) else []
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"repository must be 'owner/name', got {full_name!r}")
    return quote(parts[0], safe=""), quote(parts[1], safe="")


def _next_link(link_header: str | None) -> str | None:
    if not link_header:
        return None
    for link in parse_header_links(link_header):
        rels = (link.get("rel") or "").split()
        if "next" in rels and link.get("url"):
            return link["url"]
    return None


class GitHubClient(SourceClient):
    """Read-only GitHub REST client."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        ca_bundle: str | None = None,
        concurrency: int = 4,
        timeout: float = 30.0,
        sleep=time.sleep,
        api_version: str = "2022-11-28",
        **http_options: Any,
    ) -> None:
        """``http_options`` go to :class:`HttpClient` (max_retries, retry_budget, backoff_base, clock...)."""
        if not token:
            raise ValueError("GitHub token is empty: set GITHUB_TOKEN")
        self._http = HttpClient(
            base_url or DEFAULT_GITHUB_API_URL,
            auth_header=f"Bearer {token}",
            source="GitHub",
            token_env_var="GITHUB_TOKEN",
            url_env_var="GITHUB_API_URL",
            auth_hint="GitHub Enterprise Server uses https://HOST/api/v3",
            timeout=timeout,
            rate_per_minute=None,  # paced from x-ratelimit-remaining / x-ratelimit-reset instead
            concurrency=concurrency,
            ca_bundle=ca_bundle,
            sleep=sleep,
            default_headers={"Accept": ACCEPT, "X-GitHub-Api-Version": api_version},
            **http_options,
        )
        self.etag_cache = ETagCache()
        self.concurrency = max(1, int(concurrency))

    # ------------------------------------------------------------------ public API

    def repo(self, full_name: str) -> dict:
        owner, name = _split_full_name(full_name)
        payload, _ = self._get(f"/repos/{owner}/{name}", None, "repos", what=f"repository {full_name!r}")
        if not isinstance(payload, dict):
            raise ApiError(f"GitHub GET /repos/{owner}/{name} returned {type(payload).__name__}, not an object",
                           source="GitHub", endpoint=f"/repos/{owner}/{name}")
        self._http.add_records("repos", 1)
        return payload

    def org_repos(self, org: str) -> Iterator[dict]:
        if not org or "/" in org:
            raise ValueError(f"organisation must be a login such as 'acme', got {org!r}")
        return self._paginate(f"/orgs/{quote(org, safe='')}/repos", {"type": "all"}, "repos",
                              what=f"organisation {org!r}")

    def deployments(self, full_name: str, *, environment: str | None = None) -> Iterator[dict]:
        """Deployments, newest first. Stop iterating at your bookmark: later pages are not fetched."""
        owner, name = _split_full_name(full_name)
        params = {"environment": environment} if environment else {}
        return self._paginate(f"/repos/{owner}/{name}/deployments", params, "deployments",
                              what=f"repository {full_name!r}")

    def deployment_statuses(self, full_name: str, deployment_id: int) -> list[dict]:
        owner, name = _split_full_name(full_name)
        path = f"/repos/{owner}/{name}/deployments/{int(deployment_id)}/statuses"
        return list(self._paginate(path, {}, "deployment_statuses",
                                   what=f"deployment {int(deployment_id)} of repository {full_name!r}"))

    def deployment_statuses_many(self, full_name: str, deployment_ids: Iterable[int], *,
                                 missing: list[int] | None = None) -> list[dict]:
        """The statuses of several deployments of one repository, ``concurrency`` requests at a time
        (GitHub has no bulk endpoint: one request per deployment), in the order of ``deployment_ids``.
        Any failure is raised once the requests in flight have finished. With ``missing`` given, a
        deployment that no longer exists (404: deleted since it was listed) is appended to it
        instead of failing the whole call."""
        ids = [int(i) for i in deployment_ids]

        def one(deployment_id: int) -> list[dict]:
            try:
                return self.deployment_statuses(full_name, deployment_id)
            except ApiError as exc:
                if missing is None or exc.status != 404:
                    raise
                missing.append(deployment_id)
                return []

        if len(ids) <= 1 or self.concurrency <= 1:
            return [s for i in ids for s in one(i)]
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="gh-statuses") as pool:
            futures = [pool.submit(one, i) for i in ids]
            try:
                return [s for fut in futures for s in fut.result()]
            finally:
                for fut in futures:
                    fut.cancel()

    def pulls(self, full_name: str, *, state: str = "closed") -> Iterator[dict]:
        """Pull requests, most recently updated first. Stop iterating at your bookmark."""
        owner, name = _split_full_name(full_name)
        params = {"state": state, "sort": "updated", "direction": "desc"}
        return self._paginate(f"/repos/{owner}/{name}/pulls", params, "pulls", what=f"repository {full_name!r}")

    # ------------------------------------------------------------------ internals

    def _full_url(self, path_or_url: str, params: dict | None) -> str:
        url = self._http._url(path_or_url)
        if params:
            prepared = PreparedRequest()
            prepared.prepare_url(url, params)
            url = prepared.url
        return url

    def _get(self, path_or_url: str, params: dict | None, stream: str, *, what: str,
             page_number: int = 1, conditional: bool = True) -> tuple[Any, str | None]:
        url = self._full_url(path_or_url, params)
        cached = self.etag_cache.get(url) if conditional else None
        headers = {"If-None-Match": cached.etag} if cached else None
        try:
            resp = self._http.get(url, None, stream=stream, headers=headers)
        except ApiError as exc:
            raise self._explain(exc, what, page_number) from None
        if resp.status_code == 304:
            if cached is None:
                raise ApiError(f"GitHub GET {self._http.endpoint_of(url)} answered 304 to a request without If-None-Match",
                               source="GitHub", endpoint=self._http.endpoint_of(url), status=304)
            return json.loads(cached.body), _next_link(cached.link)
        if resp.status_code == 204 or not resp.content:
            return [], None
        link = resp.headers.get("Link")
        etag = resp.headers.get("ETag")
        if etag:
            self.etag_cache.put(url, _Cached(etag=etag, body=resp.content, link=link))
        return resp.json(), _next_link(link)

    def _paginate(self, path: str, params: dict, stream: str, *, what: str) -> Iterator[dict]:
        query = {**params, "per_page": PER_PAGE}
        self._http._url(path)  # validate eagerly
        return self._pages(path, query, stream, what)

    def _pages(self, path: str, query: dict, stream: str, what: str) -> Iterator[dict]:
        url: str | None = path
        params: dict | None = query
        page_number = 0
        seen: set[Any] = set()
        while url:
            page_number += 1
            payload, next_url = self._get(url, params, stream, what=what, page_number=page_number)
            for _ in range(EMPTY_PAGE_RETRIES):
                # An empty page that still links to a next one lost its records on the way: ask again
                # (following `next` would skip them for good).
                if not (isinstance(payload, list) and not payload and next_url):
                    break
                logger.warning("GitHub GET %s: empty page %d with a next link; asking again",
                               self._http.endpoint_of(url), page_number)
                self._http._count(stream, retries=1)
                payload, next_url = self._get(url, params, stream, what=what, page_number=page_number,
                                              conditional=False)
            if not isinstance(payload, list):
                raise ApiError(
                    f"GitHub GET {self._http.endpoint_of(url)} returned {type(payload).__name__}, not a list",
                    source="GitHub", endpoint=self._http.endpoint_of(url),
                )
            if not payload and next_url:
                raise ApiError(
                    f"GitHub GET {self._http.endpoint_of(url)} answered an empty page {page_number} with a next link "
                    f"{EMPTY_PAGE_RETRIES + 1} times in a row; stopping rather than silently skipping records.",
                    source="GitHub", endpoint=self._http.endpoint_of(url),
                )
            for item in payload:
                rid = item.get("id") if isinstance(item, dict) else None
                if rid is not None:
                    # A list that shifted while we paged (a new record on top) repeats a record.
                    if rid in seen:
                        continue
                    seen.add(rid)
                self._http.add_records(stream, 1)
                yield item
            url, params = next_url, None  # the next link carries its own query

    def _explain(self, exc: ApiError, what: str, page_number: int) -> ApiError:
        endpoint = exc.endpoint or "?"
        if exc.status == 404 and endpoint.startswith(("/repos/", "/orgs/")):
            return ApiError(
                f"GitHub GET {endpoint} answered 404: the {what} does not exist, or GITHUB_TOKEN cannot see it "
                "(GitHub answers 404 rather than 403 for private resources). GITHUB_TOKEN needs read access to the "
                "repository (fine-grained tokens: Metadata, Deployments and Pull requests: read)."
                + (f" [request id {exc.request_id}]" if exc.request_id else ""),
                source="GitHub", endpoint=endpoint, status=404, request_id=exc.request_id,
            )
        if exc.status == 422 and "pagination" in str(exc).lower():
            return ApiError(
                f"GitHub GET {endpoint} answered 422 on page {page_number}: pagination is limited for this "
                "resource, so GitHub will not list deeper. Stop earlier (an incremental bookmark) or narrow the "
                "query (e.g. an environment filter)."
                + (f" [request id {exc.request_id}]" if exc.request_id else ""),
                source="GitHub", endpoint=endpoint, status=422, request_id=exc.request_id,
            )
        return exc
