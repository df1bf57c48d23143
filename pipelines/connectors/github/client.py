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

Deployments with their statuses also come from GraphQL (:meth:`GitHubClient.deployments_with_statuses`,
the default of the nightly sync): REST has no bulk endpoint for statuses, so it costs one request
per deployment, where one GraphQL request returns 100 deployments with their statuses. GraphQL
records are mapped to the REST shapes the warehouse stores (:func:`deployment_from_graphql`,
:func:`status_from_graphql`), so everything downstream is the same whichever API was used.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Iterator
from urllib.parse import quote, urlsplit, urlunsplit

from requests.models import PreparedRequest
from requests.utils import parse_header_links

from pipelines.http import ApiError, AuthError, HttpClient, SourceClient
from pipelines.records import parse_time

logger = logging.getLogger("incident_metrics.sources")

DEFAULT_GITHUB_API_URL = "https://api.github.com"
EMPTY_PAGE_RETRIES = 2  # an empty page that links to a next one is asked again this many times
PER_PAGE = 100
ACCEPT = "application/vnd.github+json"
DEPLOYMENTS_APIS = ("graphql", "rest")
DEPLOYMENTS_API_ENV = "INCIDENT_METRICS_GITHUB_DEPLOYMENTS_API"
STATUSES_PER_DEPLOYMENT = 10  # statuses that come with each deployment; more are paged (rare)
GRAPHQL_RATE_LIMITED = ("RATE_LIMITED", "RATE_LIMIT")  # GitHub's error types for an exhausted points budget

# One page of a repository's deployments, newest first, each with its first statuses. Cost: 1 + 100
# connection requests = 1 point (GitHub: the sum of requests per connection / 100, at least 1).
_STATUS_FIELDS = """
fragment statusFields on DeploymentStatus {
  id state description environment environmentUrl logUrl createdAt updatedAt
  creator { ...actorFields }
}
fragment actorFields on Actor {
  __typename login
  ... on User { databaseId }
  ... on Bot { databaseId }
}
"""
_REPOSITORY_PAGE = """
fragment repositoryPage on Repository {
  nameWithOwner
  deployments(first: $first, after: $after, orderBy: {field: CREATED_AT, direction: DESC}) {
    pageInfo { hasNextPage endCursor }
    nodes {
      databaseId id commitOid task environment originalEnvironment description payload createdAt updatedAt
      ref { name }
      creator { ...actorFields }
      statuses(first: $statuses) { pageInfo { hasNextPage endCursor } nodes { ...statusFields } }
    }
  }
}
"""
DEPLOYMENTS_QUERY = """
query Deployments($owner: String!, $name: String!, $first: Int!, $after: String, $statuses: Int!) {
  repository(owner: $owner, name: $name) { ...repositoryPage }
}
""" + _REPOSITORY_PAGE + _STATUS_FIELDS


def batch_query(n: int) -> str:
    """The newest deployments of ``n`` repositories in one query, one alias each (``r0`` .. ``r{n-1}``).
    Cost: n x (1 + first) connection requests / 100 points (25 repos, first 10: 275 -> 3 points)."""
    params = "".join(f"$o{i}: String!, $n{i}: String!, " for i in range(n))
    fields = "\n".join(f"  r{i}: repository(owner: $o{i}, name: $n{i}) {{ ...repositoryPage }}" for i in range(n))
    return (f"query DeploymentsOfRepositories({params}$first: Int!, $after: String, $statuses: Int!) {{\n"
            f"{fields}\n}}\n") + _REPOSITORY_PAGE + _STATUS_FIELDS


# The further statuses of one deployment (more than STATUSES_PER_DEPLOYMENT), 100 a request.
STATUSES_QUERY = """
query DeploymentStatuses($id: ID!, $after: String) {
  node(id: $id) {
    ... on Deployment {
      statuses(first: 100, after: $after) { pageInfo { hasNextPage endCursor } nodes { ...statusFields } }
    }
  }
}
""" + _STATUS_FIELDS


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


def graphql_url(rest_base_url: str) -> str:
    """The GraphQL endpoint beside a REST base URL: ``https://api.github.com`` -> ``.../graphql``;
    GitHub Enterprise Server ``https://HOST/api/v3`` -> ``https://HOST/api/graphql``."""
    split = urlsplit(rest_base_url.rstrip("/"))
    path = split.path.rstrip("/")
    path = path[: -len("/v3")] + "/graphql" if path.endswith("/api/v3") else path + "/graphql"
    return urlunsplit((split.scheme, split.netloc, path, "", ""))


def _b64(text: str, urlsafe: bool) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded) if urlsafe else base64.b64decode(padded, validate=True)


def _msgpack_last_uint(raw: bytes) -> int | None:
    """The last integer of a msgpack array of integers (what GitHub's next-format node ids hold)."""
    if not raw or raw[0] & 0xF0 != 0x90:
        return None
    last, i = None, 1
    for _ in range(raw[0] & 0x0F):
        if i >= len(raw):
            return None
        b = raw[i]
        if b < 0x80:
            last, i = b, i + 1
            continue
        width = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}.get(b)
        if width is None or i + 1 + width > len(raw):
            return None
        last = int.from_bytes(raw[i + 1:i + 1 + width], "big", signed=b >= 0xD0)
        i += 1 + width
    return last


def database_id_from_node_id(node_id: Any) -> int | None:
    """The REST id inside a GraphQL global node id, or None.

    GraphQL's ``DeploymentStatus`` has no ``databaseId``, but its ``id`` (REST's ``node_id``) holds
    it, in either of GitHub's two formats: legacy ``base64("016:DeploymentStatus42")``, or next
    ``DES_`` + base64url(msgpack([0, repository id, 42])). GitHub calls ids opaque, so anything
    else is None and the caller falls back to a stable surrogate (:func:`surrogate_id`).
    """
    if not isinstance(node_id, str) or not node_id:
        return None
    prefix, sep, packed = node_id.partition("_")
    if sep and prefix.isalnum():
        try:
            return _msgpack_last_uint(_b64(packed, urlsafe=True))
        except ValueError:
            return None
    try:
        text = _b64(node_id, urlsafe=False).decode("ascii")
        size, rest = text.split(":", 1)
        digits = rest[int(size):]
        return int(digits) if digits.isdigit() else None
    except (ValueError, UnicodeDecodeError):
        return None


def surrogate_id(node_id: str) -> int:
    """A stable integer for a node id whose REST id cannot be read: 2^60 + 60 bits of its SHA-256,
    far above any id GitHub hands out, so it never collides with a real one."""
    return (1 << 60) + int(hashlib.sha256(node_id.encode()).hexdigest()[:15], 16)


def _actor(node: Any) -> dict | None:
    if not isinstance(node, dict):
        return None
    return {"login": node.get("login"), "id": node.get("databaseId"), "type": node.get("__typename")}


def deployment_from_graphql(node: dict, *, rest_base_url: str, repo: str) -> dict:
    """A GraphQL ``Deployment`` in the shape of REST's ``GET /repos/{o}/{r}/deployments`` item (the
    fields staging reads are the same: id, sha, ref, environment, created_at; REST's
    ``transient_environment``/``production_environment``/``performed_via_github_app`` do not exist
    in GraphQL and are left out)."""
    node_id = node.get("id")
    dep_id = node.get("databaseId")
    if dep_id is None:
        dep_id = database_id_from_node_id(node_id)
    base = f"{rest_base_url.rstrip('/')}/repos/{repo}"
    payload: Any = node.get("payload")
    if isinstance(payload, str):
        try:
            payload = json.loads(payload) if payload else {}
        except ValueError:
            pass  # REST sends a payload that is not JSON as the string it is
    ref = node.get("ref")
    return {
        "url": f"{base}/deployments/{dep_id}", "id": dep_id, "node_id": node_id,
        "sha": node.get("commitOid"),
        "ref": ref.get("name") if isinstance(ref, dict) else node.get("commitOid"),  # created from a sha: no ref
        "task": node.get("task"), "payload": payload,
        "original_environment": node.get("originalEnvironment"), "environment": node.get("environment"),
        "description": node.get("description"), "creator": _actor(node.get("creator")),
        "created_at": node.get("createdAt"), "updated_at": node.get("updatedAt"),
        "statuses_url": f"{base}/deployments/{dep_id}/statuses", "repository_url": base,
    }


def status_from_graphql(node: dict, *, rest_base_url: str, repo: str, deployment_id: Any) -> dict:
    """A GraphQL ``DeploymentStatus`` in the shape of REST's ``GET .../deployments/{id}/statuses``
    item: ``state`` lower-case, ``deployment_url`` ending in ``/deployments/{id}``, ``id`` the REST id
    read from the node id."""
    node_id = node.get("id")
    status_id = database_id_from_node_id(node_id)
    if status_id is None and isinstance(node_id, str) and node_id:
        status_id = surrogate_id(node_id)
    base = f"{rest_base_url.rstrip('/')}/repos/{repo}"
    state = node.get("state")
    return {
        "url": f"{base}/deployments/{deployment_id}/statuses/{status_id}", "id": status_id, "node_id": node_id,
        "state": state.lower() if isinstance(state, str) else state,
        "creator": _actor(node.get("creator")), "description": node.get("description") or "",
        "environment": node.get("environment"),
        "environment_url": node.get("environmentUrl") or "", "log_url": node.get("logUrl") or "",
        "created_at": node.get("createdAt"), "updated_at": node.get("updatedAt"),
        "deployment_url": f"{base}/deployments/{deployment_id}", "repository_url": base,
    }


class GitHubClient(SourceClient):
    """Read-only GitHub client: REST, plus GraphQL for deployments with their statuses."""

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
        deployments_api: str = "graphql",
        **http_options: Any,
    ) -> None:
        """``http_options`` go to :class:`HttpClient` (max_retries, retry_budget, backoff_base, clock...).
        ``deployments_api``: how the nightly sync reads deployments and their statuses, ``graphql``
        (one request per 100 deployments) or ``rest`` (one per 100 deployments plus one per deployment
        for its statuses; for a GitHub Enterprise Server or a token without GraphQL)."""
        if not token:
            raise ValueError("GitHub token is empty: set GITHUB_TOKEN")
        if deployments_api not in DEPLOYMENTS_APIS:
            raise ValueError(f"{DEPLOYMENTS_API_ENV} must be one of {', '.join(DEPLOYMENTS_APIS)}, got {deployments_api!r}")
        self.deployments_api = deployments_api
        self._http = HttpClient(
            base_url or DEFAULT_GITHUB_API_URL,
            auth_header=f"Bearer {token}",
            source="GitHub",
            token_env_var="GITHUB_TOKEN",
            url_env_var="GITHUB_API_URL",
            auth_hint="GitHub Enterprise Server uses https://HOST/api/v3",
            request_id_header="X-GitHub-Request-Id",
            permissions_header="X-Accepted-GitHub-Permissions",
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
        self.graphql_url = graphql_url(self._http.base_url)

    def run_metadata(self) -> dict[str, str]:
        """What the raw asset shows of how this client read (which API read the deployments)."""
        return {"deployments_api": self.deployments_api}

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

    def deployments_with_statuses(self, full_name: str, *, stop_before: datetime | None = None,
                                  page_size: int = PER_PAGE, after: str | None = None) -> Iterator[tuple[dict, list[dict]]]:
        """``(deployment, its statuses)`` of a repository, newest first, through GraphQL: one request
        per ``page_size`` deployments, each with up to STATUSES_PER_DEPLOYMENT statuses (a deployment
        with more gets the rest 100 a request). Both come in the REST shapes the warehouse stores.

        With ``stop_before``, the first deployment created before it ends the iteration (it is not
        yielded) and no further page is asked for; ``after`` starts after a cursor. Requests count
        in ``stats["deployments"]`` (follow-up status pages in ``stats["deployment_statuses"]``). A
        repository that does not exist or that the token cannot see raises :class:`ApiError` with
        status 404, as REST does.
        """
        _split_full_name(full_name)  # validates 'owner/name'
        owner, name = full_name.strip().split("/")
        what = f"repository {full_name!r}"
        while True:
            data, _ = self._graphql(DEPLOYMENTS_QUERY, {"owner": owner, "name": name, "first": page_size,
                                                        "after": after, "statuses": STATUSES_PER_DEPLOYMENT},
                                    stream="deployments", what=what, repos={"repository": full_name})
            pairs, after = self._page(data.get("repository") if isinstance(data, dict) else None, full_name,
                                      stop_before, what)
            yield from pairs
            if after is None:
                return

    def deployments_with_statuses_batch(
        self, full_names: list[str], *, stop_before: dict[str, datetime | None] | None = None, first: int = 10,
    ) -> dict[str, list[tuple[dict, list[dict]]] | ApiError]:
        """The newest deployments (with their statuses) of several repositories in ONE GraphQL
        request, ``first`` per repository, then, only for a repository whose page did not reach its
        ``stop_before``, further pages of 100 of its own. A night with a few new deployments per repo
        thus costs one request per ``len(full_names)`` repositories, not one per repository.

        Returns ``{repo: [(deployment, statuses), ...]}`` as :meth:`deployments_with_statuses` would
        yield them, or the repository's :class:`ApiError` (404: not there or not visible to the token)
        in its place; an error that concerns every repository is raised."""
        stop_before = stop_before or {}
        variables: dict[str, Any] = {"first": first, "after": None, "statuses": STATUSES_PER_DEPLOYMENT}
        aliases: dict[str, str] = {}
        for i, full_name in enumerate(full_names):
            _split_full_name(full_name)
            variables[f"o{i}"], variables[f"n{i}"] = full_name.strip().split("/")
            aliases[f"r{i}"] = full_name
        what = f"{len(full_names)} repositories ({', '.join(full_names[:3])}{', ...' if len(full_names) > 3 else ''})"
        data, missing = self._graphql(batch_query(len(full_names)), variables, stream="deployments", what=what,
                                      repos=aliases, tolerate_not_found=True)
        out: dict[str, list[tuple[dict, list[dict]]] | ApiError] = {}
        for alias, full_name in aliases.items():
            if alias in missing:
                out[full_name] = missing[alias]
                continue
            repo_what = f"repository {full_name!r}"
            pairs, after = self._page(data.get(alias) if isinstance(data, dict) else None, full_name,
                                      stop_before.get(full_name), repo_what)
            if after is not None:  # more than `first` to read: this repository's own pages of 100
                pairs += list(self.deployments_with_statuses(full_name, stop_before=stop_before.get(full_name),
                                                             after=after))
            out[full_name] = pairs
        return out

    def _page(self, repository: Any, full_name: str, stop_before: datetime | None,
              what: str) -> tuple[list[tuple[dict, list[dict]]], str | None]:
        """One page of a repository's deployments mapped to REST shapes (statuses completed), up to
        ``stop_before``; and the cursor to continue from, None when the page ended the iteration."""
        connection = repository.get("deployments") if isinstance(repository, dict) else None
        if not isinstance(connection, dict) or not isinstance(connection.get("nodes"), list):
            raise ApiError(f"GitHub GraphQL answered without deployments for the {what}",
                           source="GitHub", endpoint=self._http.endpoint_of(self.graphql_url))
        canonical = repository.get("nameWithOwner") or full_name
        pairs = []
        for node in connection["nodes"]:
            if not isinstance(node, dict):
                continue
            deployment = deployment_from_graphql(node, rest_base_url=self._http.base_url, repo=canonical)
            created = parse_time(deployment.get("created_at"))
            if stop_before is not None and created is not None and created < stop_before:
                return pairs, None
            statuses = self._statuses_of(node, deployment, canonical, what)
            self._http.add_records("deployments", 1)
            self._http.add_records("deployment_statuses", len(statuses))
            pairs.append((deployment, statuses))
        page_info = connection.get("pageInfo") or {}
        if not page_info.get("hasNextPage") or not page_info.get("endCursor") or not connection["nodes"]:
            return pairs, None
        return pairs, page_info["endCursor"]

    def _statuses_of(self, node: dict, deployment: dict, repo: str, what: str) -> list[dict]:
        """The statuses that came with a deployment node, plus the rest when there are more."""
        out: list[dict] = []
        connection = node.get("statuses")
        while isinstance(connection, dict):
            for s in connection.get("nodes") or []:
                if isinstance(s, dict):
                    out.append(status_from_graphql(s, rest_base_url=self._http.base_url, repo=repo,
                                                   deployment_id=deployment["id"]))
            page_info = connection.get("pageInfo") or {}
            if not page_info.get("hasNextPage") or not page_info.get("endCursor"):
                break
            try:
                data, _ = self._graphql(STATUSES_QUERY, {"id": node.get("id"), "after": page_info["endCursor"]},
                                        stream="deployment_statuses", what=f"deployment {deployment['id']} of {what}")
            except ApiError as exc:
                if exc.status != 404:
                    raise
                # deleted between the two requests: keep what came; the next night no longer lists it
                logger.warning("GitHub: deployment %s of %s disappeared while its statuses were read",
                               deployment["id"], what)
                break
            found = data.get("node") if isinstance(data, dict) else None
            connection = found.get("statuses") if isinstance(found, dict) else None
        return out

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

    def _graphql(self, query: str, variables: dict, *, stream: str, what: str, repos: dict[str, str] | None = None,
                 tolerate_not_found: bool = False) -> tuple[dict, dict[str, ApiError]]:
        """POST one GraphQL query; its ``data`` and ``{alias: ApiError}`` of the repositories not
        found (only with ``tolerate_not_found``), or :class:`ApiError`.

        GitHub answers GraphQL errors with HTTP 200 and an ``errors`` array: ``NOT_FOUND`` on a
        repository field (``repos``: response key -> owner/name) becomes a 404 ApiError (one
        repository's problem, as REST's 404): raised, or returned per alias with
        ``tolerate_not_found`` while the other aliases' data is used. An exhausted points budget
        (``RATE_LIMITED``) is waited out until ``x-ratelimit-reset`` and asked again, within the
        client's retry rules; anything else fails naming the error."""
        endpoint = self._http.endpoint_of(self.graphql_url)
        attempts = 0
        while True:
            try:
                resp = self._http.post_json(self.graphql_url, {"query": query, "variables": variables}, stream=stream)
            except ApiError as exc:
                if exc.status == 404 and not isinstance(exc, AuthError):
                    # The endpoint itself is missing: a GitHub Enterprise Server without GraphQL, or a
                    # GITHUB_API_URL that is not an API root. Everyone's problem, not one repository's.
                    raise ApiError(
                        f"GitHub POST {endpoint} answered 404: no GraphQL API at {self.graphql_url}. Check "
                        f"GITHUB_API_URL, or set {DEPLOYMENTS_API_ENV}=rest to read deployments through REST."
                        + (f" [request id {exc.request_id}]" if exc.request_id else ""),
                        source="GitHub", endpoint=endpoint, status=None, request_id=exc.request_id) from None
                raise
            try:  # HttpClient.json reuses the parse done while checking the body, where available
                payload = self._http.json(resp) if hasattr(self._http, "json") else resp.json()
            except ValueError:
                payload = None
            if not isinstance(payload, dict):
                raise ApiError(f"GitHub POST {endpoint} returned {type(payload).__name__}, not a GraphQL response",
                               source="GitHub", endpoint=endpoint)
            errors = [e for e in payload.get("errors") or [] if isinstance(e, dict)]
            rid = resp.headers.get("X-GitHub-Request-Id")
            if any(e.get("type") in GRAPHQL_RATE_LIMITED for e in errors):
                attempts += 1
                self._wait_for_points(resp, endpoint, stream, attempts, errors)
                continue
            if not errors:
                return payload.get("data") or {}, {}
            missing: dict[str, ApiError] = {}
            for e in errors:
                path = e.get("path") or []
                if e.get("type") == "NOT_FOUND" and path[:1] == ["node"]:
                    raise ApiError(f"GitHub POST {endpoint}: the {what} no longer exists (GraphQL NOT_FOUND)",
                                   source="GitHub", endpoint=endpoint, status=404, request_id=rid)
                if e.get("type") == "NOT_FOUND" and len(path) == 1 and path[0] in (repos or {}):
                    missing[path[0]] = ApiError(
                        f"GitHub POST {endpoint}: the repository {repos[path[0]]!r} does not exist, or GITHUB_TOKEN "
                        f"cannot see it (GraphQL NOT_FOUND: {self._http.redact(str(e.get('message') or ''))}). "
                        "GITHUB_TOKEN needs read access to the repository (fine-grained tokens: Metadata, Deployments "
                        "and Pull requests: read)." + (f" [request id {self._http.redact(rid)}]" if rid else ""),
                        source="GitHub", endpoint=endpoint, status=404, request_id=rid)
            if missing and len(missing) == len(errors):
                if not tolerate_not_found:
                    raise next(iter(missing.values()))
                return payload.get("data") or {}, missing
            if any(e.get("type") == "FORBIDDEN" for e in errors):
                raise AuthError(
                    f"GitHub refused access at {endpoint} for the {what}: "
                    f"{self._http.redact('; '.join(str(e.get('message')) for e in errors))[:300]}. The token in GITHUB_TOKEN "
                    f"lacks a permission this query needs (Deployments: read); grant it, or set {DEPLOYMENTS_API_ENV}=rest.",
                    source="GitHub", endpoint=endpoint, status=403, request_id=rid)
            detail = "; ".join(
                (f"{e['type']}: " if e.get("type") else "") + str(e.get("message") or e) for e in errors)
            raise ApiError(
                f"GitHub POST {endpoint} answered GraphQL errors for the {what}: {self._http.redact(detail)[:300]}"
                + (f" [request id {self._http.redact(rid)}]" if rid else ""),
                source="GitHub", endpoint=endpoint, status=None, request_id=rid)

    def _wait_for_points(self, resp, endpoint: str, stream: str, attempts: int, errors: list[dict]) -> None:
        """An exhausted GraphQL points budget (HTTP 200 + RATE_LIMITED): wait until the reset, counted
        as a throttled retry within the client's retry budget."""
        http = self._http
        reason = "GraphQL RATE_LIMITED (" + http.redact(str(errors[0].get("message") or "")) + ")"
        http._count(stream, throttled=1)
        if attempts > http.max_retries:
            raise ApiError(f"GitHub POST {endpoint} failed after {attempts} attempts; last error: {reason}",
                           source="GitHub", endpoint=endpoint)
        http._spend_retry(endpoint, reason, "POST")
        http._count(stream, retries=1)
        wait = http._server_wait(resp)
        reset = resp.headers.get("x-ratelimit-reset")
        if wait is None and reset is not None:
            try:
                wait = max(0.0, float(reset) - http._now())
            except ValueError:
                wait = None
        delay = wait if wait is not None and wait > 0 else http._backoff(attempts)
        if delay > http.max_rate_limit_wait:
            raise ApiError(f"GitHub POST {endpoint}: the GraphQL points budget resets in {delay:.0f}s (more than "
                           f"the {http.max_rate_limit_wait:.0f}s allowed); last error: {reason}",
                           source="GitHub", endpoint=endpoint)
        logger.warning("GitHub POST %s: %s; retry %d/%d in %.2fs", endpoint, reason, attempts, http.max_retries, delay)
        if delay > 0:
            http._sleep(delay)

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
