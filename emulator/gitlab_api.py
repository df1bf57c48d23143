"""GitLab REST API v4 lookalike (projects, deployments, environments, merge requests) over an
:class:`Organisation`: the repos the generator put on GitLab (``Repo.host == "gitlab"``).

What it holds to, as gitlab.com does (../shared/reference/api-notes.md, section 3.2):

- projects are named by numeric id or by URL-encoded path (``acme%2Fplatform%2Fcheckout``);
- offset pagination: ``page`` / ``per_page`` (default 20, at most 100), ``x-page``, ``x-per-page``,
  ``x-next-page``, ``x-prev-page``, ``Link``; ``x-total``, ``x-total-pages`` and ``rel="last"`` are
  left out above 10,000 records; an offset past 50,000 is refused (405, "use keyset pagination");
- keyset pagination (``pagination=keyset&order_by=id``) on deployments and environments, with a
  ``Link rel="next"`` and no totals; elsewhere 405 "Keyset pagination is not yet available";
- deployments: ``updated_after`` / ``updated_before`` only with ``order_by=updated_at`` (else 400
  "`updated_at` filter requires `updated_at` sort", as GitLab answers: so never with keyset),
  ``order_by`` (id, iid, created_at, updated_at, finished_at), ``sort``, ``status``, ``environment``;
  ``finished_after`` / ``finished_before`` only with ``order_by=finished_at`` and ``status=success``;
- merge requests: ``state``, ``updated_after`` / ``updated_before``, ``created_after``,
  ``order_by`` (created_at, updated_at, merged_at), ``sort`` (default desc);
- environments with a ``tier``, except where the generator leaves it out (a GitLab before 13.10).

The deployment statuses the generator writes (GitHub's vocabulary) map to GitLab's one status:
queued / pending -> created, in_progress -> running, success -> success, failure / error ->
failed; the job's ``deployable.finished_at`` is the time of the success or failure (a deployment
without a creator was made through the API: no ``deployable``, as GitLab sends it).
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime
from typing import Any, Callable
from urllib.parse import unquote

from .github_ids import int_id
from .http_common import ApiError, Request, Response, Route, compile_route, fmt_time, match_route, parse_time
from .model import Deployment, Organisation, PullRequest, Repo

UNAUTHORIZED = {"message": "401 Unauthorized"}
NOT_FOUND = {"message": "404 Project Not Found"}
KEYSET_UNAVAILABLE = {"error": "Keyset pagination is not yet available for this type of request"}
MAX_OFFSET = 50_000
TOTALS_UP_TO = 10_000
STATUS_OF = {"queued": "created", "pending": "created", "in_progress": "running", "success": "success",
             "failure": "failed", "error": "failed"}
FINAL = {"success", "failed", "canceled"}


def tier_of(environment: str) -> str:
    """The tier GitLab would give an environment of this name."""
    name = environment.lower()
    for tier in ("production", "staging", "testing", "development"):
        if name.startswith(tier[:4]):
            return tier
    return "other"


class GitLabApi:
    service_name = "gitlab"
    prefix = "/gitlab/api/v4"

    def __init__(self, org: Organisation, clock: Callable[[], datetime]) -> None:
        self.org = org
        self.clock = clock
        self.routes: list[Route] = [
            compile_route("GET", "/user", self.get_user),
            compile_route("GET", "/projects/{project}", self.get_project),
            compile_route("GET", "/projects/{project}/deployments", self.list_deployments),
            compile_route("GET", "/projects/{project}/environments", self.list_environments),
            compile_route("GET", "/projects/{project}/merge_requests", self.list_merge_requests),
        ]
        self.keyset = True  # False: answer keyset requests with 405, as a GitLab without it there does
        self.seen_queries: list[str] = []  # the path and query of every list request (tests read them)
        self.reindex()

    def reindex(self) -> None:
        self.projects: dict[str, Repo] = {}
        for r in self.org.repos:
            if r.host == "gitlab":
                self.projects[str(r.id)] = r
                self.projects[r.full_name.lower()] = r
        self.deployments: dict[str, list[Deployment]] = {}
        for d in self.org.deployments:
            if d.repo.lower() in self.projects:
                self.deployments.setdefault(d.repo.lower(), []).append(d)
        self.iid: dict[int, int] = {}
        for lst in self.deployments.values():
            lst.sort(key=lambda d: (d.created_at, d.id))
            self.iid.update({d.id: i + 1 for i, d in enumerate(lst)})
        self.merge_requests: dict[str, list[PullRequest]] = {}
        for p in self.org.pulls:
            if p.repo.lower() in self.projects:
                self.merge_requests.setdefault(p.repo.lower(), []).append(p)

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        # a project path is URL-encoded ("acme%2Fplatform%2Fapi"): match on the raw path, then decode
        route, params, allowed = match_route(self.routes, method, path)
        return route, {k: unquote(v) for k, v in params.items()}, allowed

    def check_auth(self, req: Request, valid_tokens: set[str]) -> Response | None:
        token = req.headers.get("PRIVATE-TOKEN")
        auth = req.headers.get("Authorization") or ""
        if token is None and auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        if token is None or token not in valid_tokens:
            return Response.json(401, UNAUTHORIZED)
        req.token = token
        return None

    # ------------------------------------------------------------------------------ rendering

    def user_obj(self, username: str) -> dict[str, Any]:
        return {"id": int_id("gitlab-user:" + username) % 10_000_000, "username": username, "name": username,
                "state": "active", "avatar_url": None, "web_url": f"https://gitlab.example.com/{username}"}

    def project_obj(self, repo: Repo) -> dict[str, Any]:
        namespace, _, name = repo.full_name.rpartition("/")
        return {"id": repo.id, "name": name, "path": name, "path_with_namespace": repo.full_name,
                "name_with_namespace": repo.full_name.replace("/", " / "), "default_branch": repo.default_branch,
                "visibility": "private" if repo.private else "internal",
                "namespace": {"full_path": namespace, "kind": "group"},
                "web_url": f"https://gitlab.example.com/{repo.full_name}"}

    def environment_id(self, repo: Repo, name: str) -> int:
        return int_id(f"gitlab-env:{repo.full_name}:{name}") % 100_000_000

    def environment_obj(self, repo: Repo, name: str, created: datetime | None) -> dict[str, Any]:
        out = {"id": self.environment_id(repo, name), "name": name, "slug": name.lower(), "external_url": None,
               "state": "available", "created_at": fmt_time(created), "updated_at": fmt_time(created)}
        if not repo.environment_tier_missing:
            out["tier"] = tier_of(name)
        return out

    def deployment_view(self, d: Deployment, now: datetime) -> dict[str, Any]:
        """Status, updated_at and finished_at as of the clock."""
        visible = [s for s in d.statuses if s.created_at <= now]
        status, updated, finished = "created", d.created_at, None
        for s in visible:
            mapped = STATUS_OF.get(s.state)
            if mapped is None or status in FINAL:
                continue  # "inactive" (superseded) changes nothing; a final status stays
            status, updated = mapped, s.created_at
            if mapped in FINAL:
                finished = s.created_at
        return {"status": status, "updated_at": updated, "finished_at": finished}

    def deployment_obj(self, repo: Repo, d: Deployment, now: datetime) -> dict[str, Any]:
        v = self.deployment_view(d, now)
        first = min((x.created_at for x in self.deployments[repo.full_name.lower()] if x.environment == d.environment),
                    default=d.created_at)
        return {
            "id": d.id, "iid": self.iid[d.id], "ref": d.ref, "sha": d.sha, "status": v["status"],
            "created_at": fmt_time(d.created_at), "updated_at": fmt_time(v["updated_at"]),
            "user": self.user_obj(d.creator_login) if d.creator_login else None,
            "environment": {k: v2 for k, v2 in self.environment_obj(repo, d.environment, first).items()
                            if k in ("id", "name", "slug", "external_url", "created_at", "updated_at")},
            # the CI job that deployed it, with its finish time; a deployment made through the API
            # (here: one without a creator) has none
            "deployable": {"id": d.id * 10 + 1, "status": v["status"], "stage": "deploy", "name": d.task,
                           "ref": d.ref, "created_at": fmt_time(d.created_at),
                           "finished_at": fmt_time(v["finished_at"])} if d.creator_login else None,
        }

    def merge_request_view(self, p: PullRequest, now: datetime) -> dict[str, Any]:
        closed = p.closed_at if p.closed_at is not None and p.closed_at <= now else None
        merged = p.merged_at if p.merged_at is not None and p.merged_at <= now else None
        updated = p.updated_at if p.updated_at <= now else (closed or p.created_at)
        state = "merged" if merged else "closed" if closed else "opened"
        return {"state": state, "closed_at": None if merged else closed, "merged_at": merged, "updated_at": updated}

    def merge_request_obj(self, repo: Repo, p: PullRequest, now: datetime) -> dict[str, Any]:
        v = self.merge_request_view(p, now)
        return {
            "id": int_id(f"gitlab-mr:{p.repo}!{p.number}") % 1_000_000_000, "iid": p.number, "project_id": repo.id,
            "title": p.title, "state": v["state"], "created_at": fmt_time(p.created_at),
            "updated_at": fmt_time(v["updated_at"]), "merged_at": fmt_time(v["merged_at"]),
            "closed_at": fmt_time(v["closed_at"]), "target_branch": p.base_ref, "source_branch": p.head_ref,
            "merge_commit_sha": hashlib.sha1(f"{p.repo}!{p.number}".encode()).hexdigest() if v["merged_at"] else None,
            "author": self.user_obj(p.user_login), "draft": False,
            "web_url": f"https://gitlab.example.com/{p.repo}/-/merge_requests/{p.number}",
        }

    # ------------------------------------------------------------------------------ pagination

    def paginate(self, req: Request, items: list[Any], render: Callable[[Any], dict[str, Any]], *,
                 keyset: bool = False, key: Callable[[Any], int] | None = None) -> Response:
        try:
            per_page = int(req.q("per_page", "20") or 20)
            page = int(req.q("page", "1") or 1)
        except ValueError:
            raise ApiError(400, {"error": "page is invalid"}) from None
        per_page = max(1, min(100, per_page))
        self.seen_queries.append(req.url_with()[len(req.base_url):])
        if req.q("pagination") == "keyset":
            if not (keyset and self.keyset) or req.q("order_by", "id") != "id" or key is None:
                raise ApiError(405, KEYSET_UNAVAILABLE)
            return self._keyset(req, items, render, per_page, key)
        page = max(1, page)
        start = (page - 1) * per_page
        if start >= MAX_OFFSET:
            raise ApiError(405, {"error": f"Offset pagination has a maximum allowed offset of {MAX_OFFSET} for requests "
                                          "that return objects of this type. Remaining records can be retrieved "
                                          "using keyset pagination."})
        total = len(items)
        pages = max(1, math.ceil(total / per_page))
        if "duplicate" in req.data_faults and start > 0:
            start -= 1
        chunk = [] if "empty_page" in req.data_faults else items[start:start + per_page]
        has_next = page < pages or ("empty_page" in req.data_faults and start < total)
        headers = [("x-page", str(page)), ("x-per-page", str(per_page)),
                   ("x-next-page", str(page + 1) if has_next else ""), ("x-prev-page", str(page - 1) if page > 1 else "")]
        links = []
        if has_next:
            links.append(f'<{req.url_with(per_page=per_page, page=page + 1)}>; rel="next"')
        if page > 1:
            links.append(f'<{req.url_with(per_page=per_page, page=page - 1)}>; rel="prev"')
        links.append(f'<{req.url_with(per_page=per_page, page=1)}>; rel="first"')
        if total <= TOTALS_UP_TO:
            headers += [("x-total", str(total)), ("x-total-pages", str(pages))]
            links.append(f'<{req.url_with(per_page=per_page, page=pages)}>; rel="last"')
        headers.append(("Link", ", ".join(links)))
        return Response.json(200, [render(x) for x in chunk], headers)

    def _keyset(self, req: Request, items: list[Any], render: Callable[[Any], dict[str, Any]], per_page: int,
                key: Callable[[Any], int]) -> Response:
        desc = req.q("sort", "asc") == "desc"
        ordered = sorted(items, key=key, reverse=desc)
        after = req.q("id_after") if not desc else req.q("id_before")
        if after is not None:
            bound = int(after)
            ordered = [x for x in ordered if (key(x) < bound if desc else key(x) > bound)]
        chunk = [] if "empty_page" in req.data_faults else ordered[:per_page]
        headers = []
        if len(ordered) > per_page or ("empty_page" in req.data_faults and ordered):
            last = key(chunk[-1]) if chunk else (int(after) if after is not None else (key(ordered[0]) + (1 if desc else -1)))
            nxt = req.url_with(**({"id_before": last} if desc else {"id_after": last}))
            headers.append(("Link", f'<{nxt}>; rel="next"'))
        return Response.json(200, [render(x) for x in chunk], headers)

    # ------------------------------------------------------------------------------ handlers

    def _project(self, params: dict[str, str]) -> Repo:
        repo = self.projects.get(params["project"].lower())
        if repo is None or not repo.accessible:
            raise ApiError(404, NOT_FOUND)
        return repo

    @staticmethod
    def _time_param(req: Request, name: str) -> datetime | None:
        value = req.q(name)
        if value in (None, ""):
            return None
        try:
            return parse_time(value, None)
        except ValueError:
            raise ApiError(400, {"error": f"{name} is invalid"}) from None

    def get_user(self, req: Request, params: dict[str, str]) -> Response:
        return Response.json(200, {**self.user_obj("emulator-bot"), "is_admin": False, "bot": True})

    def get_project(self, req: Request, params: dict[str, str]) -> Response:
        return Response.json(200, self.project_obj(self._project(params)))

    def list_deployments(self, req: Request, params: dict[str, str]) -> Response:
        repo = self._project(params)
        now = self.clock()
        order_by, sort = req.q("order_by", "id"), req.q("sort", "asc")
        if order_by not in ("id", "iid", "created_at", "updated_at", "finished_at", "ref") or sort not in ("asc", "desc"):
            raise ApiError(400, {"error": "order_by, sort does not have a valid value"})
        status = req.q("status")
        finished_after, finished_before = self._time_param(req, "finished_after"), self._time_param(req, "finished_before")
        if (finished_after or finished_before) and (order_by != "finished_at" or status != "success"):
            raise ApiError(400, {"message": "`finished_at` filter requires `finished_at` sort and `success` status "
                                            "filter."})
        updated_after, updated_before = self._time_param(req, "updated_after"), self._time_param(req, "updated_before")
        if (updated_after or updated_before) and order_by != "updated_at":
            raise ApiError(400, {"message": "400 Bad request - `updated_at` filter requires `updated_at` sort"})
        env = req.q("environment")
        rows = []
        for d in self.deployments.get(repo.full_name.lower(), []):
            if d.created_at > now:
                continue
            v = self.deployment_view(d, now)
            if status and v["status"] != status or env and d.environment != env:
                continue
            if updated_after and v["updated_at"] < updated_after or updated_before and v["updated_at"] >= updated_before:
                continue
            if finished_after and (v["finished_at"] is None or v["finished_at"] < finished_after):
                continue
            if finished_before and (v["finished_at"] is None or v["finished_at"] >= finished_before):
                continue
            rows.append((d, v))
        sort_key: dict[str, Callable[[tuple[Deployment, dict]], Any]] = {
            "id": lambda r: r[0].id, "iid": lambda r: self.iid[r[0].id], "created_at": lambda r: (r[0].created_at, r[0].id),
            "updated_at": lambda r: (r[1]["updated_at"], r[0].id), "ref": lambda r: (r[0].ref, r[0].id),
            "finished_at": lambda r: (r[1]["finished_at"] or now, r[0].id)}
        rows.sort(key=sort_key[order_by], reverse=sort == "desc")
        return self.paginate(req, rows, lambda r: self.deployment_obj(repo, r[0], now), keyset=True, key=lambda r: r[0].id)

    def list_environments(self, req: Request, params: dict[str, str]) -> Response:
        repo = self._project(params)
        now = self.clock()
        first: dict[str, datetime] = {}
        for d in self.deployments.get(repo.full_name.lower(), []):
            if d.created_at <= now:
                first.setdefault(d.environment, d.created_at)
        envs = sorted(first, key=lambda n: self.environment_id(repo, n))
        return self.paginate(req, envs, lambda n: self.environment_obj(repo, n, first[n]), keyset=True,
                             key=lambda n: self.environment_id(repo, n))

    def list_merge_requests(self, req: Request, params: dict[str, str]) -> Response:
        repo = self._project(params)
        if req.q("pagination") == "keyset":  # not on merge requests
            raise ApiError(405, KEYSET_UNAVAILABLE)
        now = self.clock()
        state = req.q("state", "all")
        order_by, sort = req.q("order_by", "created_at"), req.q("sort", "desc")
        if order_by not in ("created_at", "updated_at", "merged_at", "title") or sort not in ("asc", "desc"):
            raise ApiError(400, {"error": "order_by, sort does not have a valid value"})
        updated_after, updated_before = self._time_param(req, "updated_after"), self._time_param(req, "updated_before")
        created_after = self._time_param(req, "created_after")
        rows = []
        for p in self.merge_requests.get(repo.full_name.lower(), []):
            if p.created_at > now:
                continue
            v = self.merge_request_view(p, now)
            if state != "all" and v["state"] != state:
                continue
            if updated_after and v["updated_at"] < updated_after or updated_before and v["updated_at"] >= updated_before:
                continue
            if created_after and p.created_at < created_after:
                continue
            rows.append((p, v))
        sort_key: dict[str, Callable[[tuple[PullRequest, dict]], Any]] = {
            "created_at": lambda r: (r[0].created_at, r[0].number), "updated_at": lambda r: (r[1]["updated_at"], r[0].number),
            "merged_at": lambda r: (r[1]["merged_at"] or now, r[0].number), "title": lambda r: (r[0].title, r[0].number)}
        rows.sort(key=sort_key[order_by], reverse=sort == "desc")
        return self.paginate(req, rows, lambda r: self.merge_request_obj(repo, r[0], now))
