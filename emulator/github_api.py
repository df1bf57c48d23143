"""GitHub REST API lookalike (deployments, statuses, pull requests) over an :class:`Organisation`."""

from __future__ import annotations

import hashlib
import math
from datetime import datetime
from typing import Any, Callable

from .github_graphql import GitHubGraphQL
from .github_ids import int_id as _int_id
from .github_ids import node_id as _node_id
from .http_common import ApiError, Request, Response, Route, compile_route, fmt_time, match_route
from .model import Deployment, DeploymentStatus, Organisation, PullRequest, Repo

DOCS = "https://docs.github.com/rest"
BAD_CREDENTIALS = {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"}
SUPPORTED_VERSIONS = ("2022-11-28", "2026-03-10")
PAGINATION_LIMITED = {
    "message": "In order to keep the API fast for everyone, pagination is limited for this resource. Check the rel=last "
               "link relation in the Link response header to see how far back you can traverse.",
    "documentation_url": "https://docs.github.com/rest/guides/using-pagination-in-the-rest-api",
    "status": "422",
}


def not_found(doc: str = DOCS) -> ApiError:
    return ApiError(404, {"message": "Not Found", "documentation_url": doc, "status": "404"})


class GitHubApi:
    service_name = "github"
    prefix = "/github"

    def __init__(self, org: Organisation, clock: Callable[[], datetime]) -> None:
        self.org = org
        self.clock = clock
        self.routes: list[Route] = [
            compile_route("GET", "/user", self.get_user),
            compile_route("GET", "/user/orgs", self.user_orgs),
            compile_route("GET", "/orgs/{org}/repos", self.org_repos),
            compile_route("GET", "/repos/{owner}/{repo}", self.get_repo),
            compile_route("GET", "/repos/{owner}/{repo}/deployments", self.list_deployments),
            compile_route("GET", "/repos/{owner}/{repo}/deployments/{deployment_id}", self.get_deployment),
            compile_route("GET", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses", self.list_statuses),
            compile_route("GET", "/repos/{owner}/{repo}/pulls", self.list_pulls),
            compile_route("GET", "/repos/{owner}/{repo}/pulls/{number}", self.get_pull),
            compile_route("GET", "/rate_limit", self.rate_limit),
        ]
        self.rate_limit_info: Callable[[str | None], dict[str, int]] = lambda token: {}
        self.graphql = None  # set below: it reads the indexes reindex() builds
        self.reindex()
        self.graphql = GitHubGraphQL(self)
        # POST /graphql answers with its own points budget and headers (see EmulatorServer._serve_github)
        self.routes.append(compile_route("POST", "/graphql", self.graphql.handle))

    def reindex(self) -> None:
        org = self.org
        self.repos = {r.full_name.lower(): r for r in org.repos if r.host == "github"}  # GitLab's are not here
        self.deployments: dict[str, list[Deployment]] = {}
        self.deployment_by_id: dict[int, Deployment] = {}
        for d in org.deployments:
            if d.repo.lower() not in self.repos:
                continue
            self.deployments.setdefault(d.repo.lower(), []).append(d)
            self.deployment_by_id[d.id] = d
        for lst in self.deployments.values():
            lst.sort(key=lambda d: (d.created_at, d.id), reverse=True)  # newest first
        self.repo_created = {k: min(d.created_at for d in v) for k, v in self.deployments.items() if v}
        self.pulls: dict[str, list[PullRequest]] = {}
        for p in org.pulls:
            if p.repo.lower() in self.repos:
                self.pulls.setdefault(p.repo.lower(), []).append(p)
        if self.graphql is not None:
            self.graphql.reindex()

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        return match_route(self.routes, method, path)

    def check_auth(self, req: Request, valid_tokens: set[str]) -> Response | None:
        auth = req.headers.get("Authorization") or ""
        token = None
        for scheme in ("Bearer ", "bearer ", "token ", "Token "):
            if auth.startswith(scheme):
                token = auth[len(scheme):].strip()
        if token is None or token not in valid_tokens:
            return Response.json(401, BAD_CREDENTIALS)
        req.token = token
        return None

    # ------------------------------------------------------------------------------ rendering

    def user_obj(self, login: str, req: Request, kind: str | None = None) -> dict[str, Any]:
        uid = _int_id("user:" + login)
        kind = kind or ("Bot" if login.endswith("[bot]") or login.endswith("-bot") else "User")
        return {
            "login": login, "id": uid, "node_id": _node_id(kind, uid),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4", "gravatar_id": "",
            "url": f"{req.base_url}/users/{login}", "html_url": f"https://github.com/{login}",
            "repos_url": f"{req.base_url}/users/{login}/repos", "type": kind, "site_admin": False,
        }

    def repo_obj(self, repo: Repo, req: Request) -> dict[str, Any]:
        base = f"{req.base_url}/repos/{repo.full_name}"
        owner, name = repo.full_name.split("/", 1)
        created = self.repo_created.get(repo.full_name.lower()) or self.clock()
        return {
            "id": repo.id, "node_id": _node_id("Repository", repo.id), "name": name, "full_name": repo.full_name,
            "private": repo.private, "owner": self.user_obj(owner, req, "Organization"),
            "html_url": f"https://github.com/{repo.full_name}", "description": f"Source of {name}", "fork": False,
            "url": base, "deployments_url": f"{base}/deployments", "pulls_url": f"{base}/pulls{{/number}}",
            "created_at": fmt_time(created), "updated_at": fmt_time(self.clock()), "pushed_at": fmt_time(self.clock()),
            "default_branch": repo.default_branch, "visibility": "private" if repo.private else "internal",
            "archived": False, "disabled": False,
            "permissions": {"admin": False, "maintain": False, "push": False, "triage": False, "pull": True},
        }

    def visible_statuses(self, d: Deployment, now: datetime) -> list[DeploymentStatus]:
        return [s for s in d.statuses if s.created_at <= now]

    def deployment_obj(self, d: Deployment, req: Request, now: datetime) -> dict[str, Any]:
        base = f"{req.base_url}/repos/{d.repo}"
        sts = self.visible_statuses(d, now)
        updated = max([d.created_at] + [s.created_at for s in sts])
        return {
            "url": f"{base}/deployments/{d.id}", "id": d.id, "node_id": _node_id("Deployment", d.id),
            "sha": d.sha, "ref": d.ref, "task": d.task, "payload": {},
            "original_environment": d.environment, "environment": d.environment,
            "description": f"Deploy {d.sha[:7]} to {d.environment}",
            "creator": self.user_obj(d.creator_login, req) if d.creator_login else None,
            "created_at": fmt_time(d.created_at), "updated_at": fmt_time(updated),
            "statuses_url": f"{base}/deployments/{d.id}/statuses", "repository_url": base,
            "transient_environment": False, "production_environment": d.environment == "production",
            "performed_via_github_app": None,
        }

    def status_obj(self, d: Deployment, s: DeploymentStatus, req: Request) -> dict[str, Any]:
        base = f"{req.base_url}/repos/{d.repo}"
        return {
            "url": f"{base}/deployments/{d.id}/statuses/{s.id}", "id": s.id, "node_id": _node_id("DeploymentStatus", s.id),
            "state": s.state, "creator": self.user_obj(d.creator_login or "deploy-bot", req),
            "description": s.description, "environment": d.environment, "target_url": "",
            "created_at": fmt_time(s.created_at), "updated_at": fmt_time(s.created_at),
            "deployment_url": f"{base}/deployments/{d.id}", "repository_url": base,
            "environment_url": "", "log_url": "", "performed_via_github_app": None,
        }

    def pull_view(self, p: PullRequest, now: datetime) -> dict[str, Any]:
        """The pull request as of the clock: merged/closed only once those times have passed."""
        closed = p.closed_at if p.closed_at is not None and p.closed_at <= now else None
        merged = p.merged_at if p.merged_at is not None and p.merged_at <= now else None
        updated = p.updated_at if p.updated_at <= now else (closed or p.created_at)
        return {"state": "closed" if closed else "open", "closed_at": closed, "merged_at": merged, "updated_at": updated}

    def pull_obj(self, p: PullRequest, req: Request, now: datetime) -> dict[str, Any]:
        v = self.pull_view(p, now)
        base = f"{req.base_url}/repos/{p.repo}"
        repo = self.repos.get(p.repo.lower())
        pid = _int_id(f"pull:{p.repo}#{p.number}")
        owner = p.repo.split("/", 1)[0]
        head_sha = hashlib.sha1(f"{p.repo}:{p.number}:{p.head_ref}".encode()).hexdigest()
        repo_json = self.repo_obj(repo, req) if repo else None
        return {
            "url": f"{base}/pulls/{p.number}", "id": pid, "node_id": _node_id("PullRequest", pid),
            "html_url": f"https://github.com/{p.repo}/pull/{p.number}", "number": p.number, "state": v["state"],
            "locked": False, "title": p.title, "user": self.user_obj(p.user_login, req), "body": None,
            "labels": [], "milestone": None, "active_lock_reason": None,
            "created_at": fmt_time(p.created_at), "updated_at": fmt_time(v["updated_at"]),
            "closed_at": fmt_time(v["closed_at"]), "merged_at": fmt_time(v["merged_at"]),
            "merge_commit_sha": p.merge_commit_sha if v["merged_at"] else None,
            "assignee": None, "assignees": [], "requested_reviewers": [], "requested_teams": [],
            "head": {"label": f"{owner}:{p.head_ref}", "ref": p.head_ref, "sha": head_sha,
                     "user": self.user_obj(owner, req, "Organization"), "repo": repo_json},
            "base": {"label": f"{owner}:{p.base_ref}", "ref": p.base_ref,
                     "sha": hashlib.sha1(f"{p.repo}:{p.number}:base".encode()).hexdigest(),
                     "user": self.user_obj(owner, req, "Organization"), "repo": repo_json},
            "author_association": "MEMBER", "auto_merge": None, "draft": False,
        }

    # ------------------------------------------------------------------------------ pagination

    def paginate(self, req: Request, items: list[Any], render: Callable[[Any], dict[str, Any]]) -> Response:
        try:
            per_page = int(req.q("per_page", "30") or 30)
            page = int(req.q("page", "1") or 1)
        except ValueError:
            raise ApiError(400, {"message": "Invalid pagination parameters", "documentation_url": DOCS, "status": "400"}) from None
        per_page = max(1, min(100, per_page))
        page = max(1, page)
        if req.max_page is not None and page > req.max_page:
            raise ApiError(422, PAGINATION_LIMITED)
        total = len(items)
        last = max(1, math.ceil(total / per_page))
        start = (page - 1) * per_page
        if "duplicate" in req.data_faults and start > 0:
            start -= 1  # the last record of the previous page again at the top
        chunk = [] if "empty_page" in req.data_faults else items[start:start + per_page]
        links = []
        if page < last:
            links.append(f'<{req.url_with(per_page=per_page, page=page + 1)}>; rel="next"')
            links.append(f'<{req.url_with(per_page=per_page, page=last)}>; rel="last"')
        if page > 1:
            links.append(f'<{req.url_with(per_page=per_page, page=min(page - 1, last))}>; rel="prev"')
            links.append(f'<{req.url_with(per_page=per_page, page=1)}>; rel="first"')
        headers = [("Link", ", ".join(links))] if links else []
        return Response.json(200, [render(x) for x in chunk], headers)

    # ------------------------------------------------------------------------------ handlers

    def _repo(self, params: dict[str, str]) -> Repo:
        repo = self.repos.get(f"{params['owner']}/{params['repo']}".lower())
        if repo is None or not repo.accessible:
            raise not_found("https://docs.github.com/rest/repos/repos#get-a-repository")
        return repo

    def get_user(self, req: Request, params: dict[str, str]) -> Response:
        return Response.json(200, {**self.user_obj("emulator-bot", req), "name": "Emulator Bot", "email": None})

    def user_orgs(self, req: Request, params: dict[str, str]) -> Response:
        org = self.org.github_org
        uid = _int_id("user:" + org)
        return self.paginate(req, [org], lambda o: {
            "login": o, "id": uid, "node_id": _node_id("Organization", uid), "url": f"{req.base_url}/orgs/{o}",
            "repos_url": f"{req.base_url}/orgs/{o}/repos", "description": "Synthetic organisation"})

    def org_repos(self, req: Request, params: dict[str, str]) -> Response:
        if params["org"].lower() != self.org.github_org.lower():
            raise not_found("https://docs.github.com/rest/repos/repos#list-organization-repositories")
        repos = sorted((r for r in self.org.repos if r.accessible), key=lambda r: r.full_name.lower())
        return self.paginate(req, repos, lambda r: self.repo_obj(r, req))

    def get_repo(self, req: Request, params: dict[str, str]) -> Response:
        return Response.json(200, self.repo_obj(self._repo(params), req))

    def list_deployments(self, req: Request, params: dict[str, str]) -> Response:
        repo = self._repo(params)
        now = self.clock()
        items = [d for d in self.deployments.get(repo.full_name.lower(), []) if d.created_at <= now]
        for key in ("environment", "sha", "ref", "task"):
            val = req.q(key)
            if val:
                items = [d for d in items if getattr(d, key) == val]
        return self.paginate(req, items, lambda d: self.deployment_obj(d, req, now))

    def _deployment(self, repo: Repo, params: dict[str, str]) -> Deployment:
        try:
            d = self.deployment_by_id.get(int(params["deployment_id"]))
        except ValueError:
            d = None
        if d is None or d.repo.lower() != repo.full_name.lower() or d.created_at > self.clock():
            raise not_found("https://docs.github.com/rest/deployments/deployments#get-a-deployment")
        return d

    def get_deployment(self, req: Request, params: dict[str, str]) -> Response:
        d = self._deployment(self._repo(params), params)
        return Response.json(200, self.deployment_obj(d, req, self.clock()))

    def list_statuses(self, req: Request, params: dict[str, str]) -> Response:
        d = self._deployment(self._repo(params), params)
        sts = sorted(self.visible_statuses(d, self.clock()), key=lambda s: (s.created_at, s.id), reverse=True)
        return self.paginate(req, sts, lambda s: self.status_obj(d, s, req))

    def list_pulls(self, req: Request, params: dict[str, str]) -> Response:
        repo = self._repo(params)
        now = self.clock()
        state = req.q("state", "open")
        sort = req.q("sort", "created")
        direction = req.q("direction") or ("desc" if sort == "created" else "asc")
        if state not in ("open", "closed", "all") or sort not in ("created", "updated", "popularity", "long-running") \
                or direction not in ("asc", "desc"):
            raise ApiError(422, {"message": "Validation Failed", "errors": [{"resource": "Search", "field": "q", "code": "invalid"}],
                                 "documentation_url": "https://docs.github.com/rest/pulls/pulls#list-pull-requests", "status": "422"})
        items = []
        for p in self.pulls.get(repo.full_name.lower(), []):
            if p.created_at > now:
                continue
            v = self.pull_view(p, now)
            if state != "all" and v["state"] != state:
                continue
            items.append((p, v))
        base = req.q("base")
        if base:
            items = [(p, v) for p, v in items if p.base_ref == base]
        if sort == "updated":
            key: Callable[[Any], Any] = lambda pv: (pv[1]["updated_at"], pv[0].number)  # noqa: E731
        elif sort == "long-running":
            key = lambda pv: ((pv[1]["closed_at"] or now) - pv[0].created_at, pv[0].number)  # noqa: E731
        else:  # created, popularity (no comments here: falls back to created)
            key = lambda pv: (pv[0].created_at, pv[0].number)  # noqa: E731
        items.sort(key=key, reverse=(direction == "desc"))
        return self.paginate(req, [p for p, _ in items], lambda p: self.pull_obj(p, req, now))

    def get_pull(self, req: Request, params: dict[str, str]) -> Response:
        repo = self._repo(params)
        now = self.clock()
        for p in self.pulls.get(repo.full_name.lower(), []):
            if str(p.number) == params["number"] and p.created_at <= now:
                obj = self.pull_obj(p, req, now)
                obj["merged"] = obj["merged_at"] is not None
                return Response.json(200, obj)
        raise not_found("https://docs.github.com/rest/pulls/pulls#get-a-pull-request")

    def rate_limit(self, req: Request, params: dict[str, str]) -> Response:
        core = self.rate_limit_info(req.token)
        graphql = self.graphql.quota.info(req.token) if self.graphql is not None else {}
        resp = Response.json(200, {"resources": {"core": core, "search": {**core, "limit": 30, "remaining": 30, "used": 0, "resource": "search"},
                                                 "graphql": graphql},
                                   "rate": core})
        resp.counts_quota = False
        return resp
