"""GitHub GraphQL API lookalike (``POST /graphql``): repositories, deployments and their statuses.

The schema below is a subset of GitHub's public schema (``octokit/graphql-schema``), written in SDL
with the same type, field, argument and enum names, and executed by ``graphql-core``: any valid
query against the subset works (aliases, fragments, variables, ``edges``/``nodes``, several
``repository`` fields in one query), and anything outside it fails validation with a GitHub-shaped
error (HTTP 200, an ``errors`` array, no ``data``).

What GitHub documents and this emulation does:

- Rate limit in points: each query costs ``max(1, round(R / 100))`` where R is the number of
  requests needed to fulfil every connection (a connection is requested once per parent node:
  ``repository { deployments(first: 100) { nodes { statuses(first: 10) } } }`` is 1 + 100 = 101
  requests, so 1 point). Points come out of a ``graphql`` budget per token (5,000 an hour by
  default, separate from the REST ``core`` budget) and every answer carries ``x-ratelimit-*``
  headers with ``x-ratelimit-resource: graphql``. A query costing more than what is left is answered
  200 with ``{"errors": [{"type": "RATE_LIMITED", ...}]}`` and nothing is charged.
- Node limit: every connection needs ``first`` or ``last`` (1..100), and one query may ask for at
  most 500,000 nodes (the page sizes multiplied down each path).
- ``rateLimit { cost limit nodeCount remaining resetAt used }``; ``rateLimit(dryRun: true)`` returns
  the cost without evaluating (nor charging) the query.
- A repository that does not exist or that the token cannot see: ``data.repository`` is null and an
  error ``{"type": "NOT_FOUND", "path": ["repository"], ...}`` (HTTP 200).
- Global node ids: the legacy format (``base64("016:DeploymentStatus5001")``, what the REST
  emulation puts in ``node_id``), or GitHub's next format (``DES_`` + base64url(msgpack([0, repo
  id, id]))) when the request sends ``X-Github-Next-Global-ID: 1``.

The emulator clock applies as on the REST side: deployments and statuses created after it do not
exist. Pages are cut from per-repository lists sorted by creation time with ``bisect``, so a page
costs O(page size), not O(repository history).
"""

from __future__ import annotations

import base64
import bisect
import json
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSyntaxError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    build_schema,
    execute,
    get_operation_ast,
    parse,
    validate,
)
from graphql.execution.values import get_argument_values, get_variable_values

from .github_ids import int_id as _int_id
from .github_ids import node_id as _node_id
from .http_common import Request, Response, fmt_time
from .model import Deployment, DeploymentStatus, Repo

if TYPE_CHECKING:
    from .github_api import GitHubApi

DOCS = "https://docs.github.com/graphql"
MAX_PAGE = 100
NODE_LIMIT = 500_000

SDL = '''
"""An ISO-8601 encoded UTC date string."""
scalar DateTime

"""An RFC 3986, RFC 3987, and RFC 6570 (level 4) compliant URI string."""
scalar URI

interface Node {
  id: ID!
}

interface Actor {
  avatarUrl(size: Int): URI!
  login: String!
  resourcePath: URI!
  url: URI!
}

type User implements Actor & Node {
  avatarUrl(size: Int): URI!
  databaseId: Int
  id: ID!
  login: String!
  name: String
  resourcePath: URI!
  url: URI!
}

type Bot implements Actor & Node {
  avatarUrl(size: Int): URI!
  databaseId: Int
  id: ID!
  login: String!
  resourcePath: URI!
  url: URI!
}

type PageInfo {
  endCursor: String
  hasNextPage: Boolean!
  hasPreviousPage: Boolean!
  startCursor: String
}

enum OrderDirection {
  ASC
  DESC
}

enum DeploymentOrderField {
  CREATED_AT
}

input DeploymentOrder {
  direction: OrderDirection!
  field: DeploymentOrderField!
}

enum DeploymentState {
  ABANDONED
  ACTIVE
  DESTROYED
  ERROR
  FAILURE
  INACTIVE
  IN_PROGRESS
  PENDING
  QUEUED
  SUCCESS
  WAITING
}

enum DeploymentStatusState {
  ERROR
  FAILURE
  INACTIVE
  IN_PROGRESS
  PENDING
  QUEUED
  SUCCESS
  WAITING%(extra_states)s
}

type Ref implements Node {
  id: ID!
  name: String!
  prefix: String!
}

type Repository implements Node {
  databaseId: Int
  deployments(
    after: String
    before: String
    environments: [String!]
    first: Int
    last: Int
    orderBy: DeploymentOrder = {field: CREATED_AT, direction: ASC}
  ): DeploymentConnection!
  id: ID!
  isPrivate: Boolean!
  name: String!
  nameWithOwner: String!
  url: URI!
}

type Deployment implements Node {
  commitOid: String!
  createdAt: DateTime!
  creator: Actor!
  databaseId: Int
  description: String
  environment: String
  id: ID!
  latestEnvironment: String
  latestStatus: DeploymentStatus
  originalEnvironment: String
  payload: String
  ref: Ref
  repository: Repository!
  state: DeploymentState
  statuses(after: String, before: String, first: Int, last: Int): DeploymentStatusConnection
  task: String
  updatedAt: DateTime!
}

type DeploymentConnection {
  edges: [DeploymentEdge]
  nodes: [Deployment]
  pageInfo: PageInfo!
  totalCount: Int!
}

type DeploymentEdge {
  cursor: String!
  node: Deployment
}

type DeploymentStatus implements Node {
  createdAt: DateTime!
  creator: Actor!
  deployment: Deployment!
  description: String
  environment: String
  environmentUrl: URI
  id: ID!
  logUrl: URI
  state: DeploymentStatusState!
  updatedAt: DateTime!
}

type DeploymentStatusConnection {
  edges: [DeploymentStatusEdge]
  nodes: [DeploymentStatus]
  pageInfo: PageInfo!
  totalCount: Int!
}

type DeploymentStatusEdge {
  cursor: String!
  node: DeploymentStatus
}

type RateLimit {
  cost: Int!
  limit: Int!
  nodeCount: Int!
  remaining: Int!
  resetAt: DateTime!
  used: Int!
}

type Query {
  node(id: ID!): Node
  rateLimit(dryRun: Boolean = false): RateLimit
  repository(followRenames: Boolean = true, name: String!, owner: String!): Repository
  viewer: User!
}
'''

KNOWN_STATES = frozenset({"ERROR", "FAILURE", "INACTIVE", "IN_PROGRESS", "PENDING", "QUEUED", "SUCCESS", "WAITING"})
NEXT_ID_PREFIX = {"Repository": "R_", "Deployment": "DE_", "DeploymentStatus": "DES_", "User": "U_", "Bot": "BOT_"}


# ------------------------------------------------------------------------------------------------
# ids and cursors


def _msgpack_uints(values: list[int]) -> bytes:
    """A msgpack array of non-negative integers (what GitHub's next-format node ids encode)."""
    out = bytearray([0x90 | len(values)])
    for v in values:
        if v < 0x80:
            out.append(v)
        elif v <= 0xFF:
            out += bytes([0xCC, v])
        elif v <= 0xFFFF:
            out += bytes([0xCD]) + v.to_bytes(2, "big")
        elif v <= 0xFFFFFFFF:
            out += bytes([0xCE]) + v.to_bytes(4, "big")
        else:
            out += bytes([0xCF]) + v.to_bytes(8, "big")
    return bytes(out)


def next_node_id(kind: str, *ids: int) -> str:
    """GitHub's next global id format: ``PREFIX_`` + base64url(msgpack([0, *ids])), unpadded."""
    return NEXT_ID_PREFIX[kind] + base64.urlsafe_b64encode(_msgpack_uints([0, *ids])).decode().rstrip("=")


def _decode_legacy(node_id: str) -> tuple[str, int] | None:
    try:
        text = base64.b64decode(node_id + "=" * (-len(node_id) % 4)).decode()
        size, rest = text.split(":", 1)
        kind, digits = rest[:int(size)], rest[int(size):]
        return kind, int(digits)
    except (ValueError, UnicodeDecodeError):
        return None


def _decode_next(node_id: str) -> tuple[str, int] | None:
    prefix, sep, packed = node_id.partition("_")
    kind = next((k for k, p in NEXT_ID_PREFIX.items() if p == prefix + "_"), None)
    if not sep or kind is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4))
    except ValueError:
        return None
    if not raw or raw[0] & 0xF0 != 0x90:
        return None
    values, i = [], 1
    for _ in range(raw[0] & 0x0F):
        if i >= len(raw):
            return None
        b = raw[i]
        if b < 0x80:
            values.append(b)
            i += 1
            continue
        width = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}.get(b)
        if width is None or i + 1 + width > len(raw):
            return None
        values.append(int.from_bytes(raw[i + 1:i + 1 + width], "big"))
        i += 1 + width
    return (kind, values[-1]) if values else None


def decode_node_id(node_id: str) -> tuple[str, int] | None:
    """(type name, database id) of a legacy or next-format id this emulator hands out."""
    return _decode_next(node_id) or _decode_legacy(node_id)


def _cursor(created: datetime, record_id: int) -> str:
    return base64.b64encode(("cursor:v2:" + json.dumps([fmt_time(created), record_id])).encode()).decode()


def _cursor_key(cursor: str, arg: str) -> tuple[datetime, int]:
    try:
        text = base64.b64decode(cursor, validate=True).decode()
        if not text.startswith("cursor:v2:"):
            raise ValueError(text)
        when, record_id = json.loads(text[len("cursor:v2:"):])
        return datetime.fromisoformat(when.replace("Z", "+00:00")), int(record_id)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise GraphQLError(f"`{cursor}` does not appear to be a valid cursor.",
                           extensions={"type": "INVALID_CURSOR_ARGUMENTS", "argument": arg}) from None


# ------------------------------------------------------------------------------------------------
# cost (GitHub's documented formula)


@dataclass
class QueryCost:
    requests: int = 0  # connection requests, each page size assumed full
    nodes: int = 0  # the most nodes the query can return
    errors: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False

    @property
    def points(self) -> int:
        return max(1, math.floor(self.requests / 100 + 0.5))


def _named(t: Any) -> Any:
    while isinstance(t, (GraphQLNonNull, GraphQLList)):
        t = t.of_type
    return t


def _loc(node: Any) -> list[dict[str, int]]:
    if node.loc is None:
        return []
    from graphql.language.location import get_location

    loc = get_location(node.loc.source, node.loc.start)
    return [{"line": loc.line, "column": loc.column}]


def query_cost(schema: GraphQLSchema, doc: Any, operation: OperationDefinitionNode, variables: dict[str, Any]) -> QueryCost:
    """Requests and nodes a query needs (GitHub's rules), plus the pagination errors GitHub raises
    before executing: a connection without ``first``/``last``, a page over 100, over 500,000 nodes."""
    fragments = {d.name.value: d for d in doc.definitions if isinstance(d, FragmentDefinitionNode)}
    out = QueryCost()

    def collect(selection_set: SelectionSetNode, parent: Any, into: dict[str, list[tuple[FieldNode, Any]]],
                seen: set[str]) -> None:
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                key = sel.alias.value if sel.alias else sel.name.value
                into.setdefault(key, []).append((sel, parent))
            elif isinstance(sel, InlineFragmentNode):
                cond = schema.get_type(sel.type_condition.name.value) if sel.type_condition else parent
                collect(sel.selection_set, cond, into, seen)
            elif isinstance(sel, FragmentSpreadNode) and sel.name.value not in seen:
                frag = fragments[sel.name.value]
                collect(frag.selection_set, schema.get_type(frag.type_condition.name.value), into, seen | {sel.name.value})

    def walk(selection_set: SelectionSetNode, parent: Any, multiplier: int, path: list[str]) -> None:
        groups: dict[str, list[tuple[FieldNode, Any]]] = {}
        collect(selection_set, parent, groups, set())
        for key, nodes in groups.items():
            node, owner = nodes[0]
            name = node.name.value
            if name.startswith("__") or not isinstance(owner, (GraphQLObjectType, GraphQLInterfaceType)):
                continue
            definition = owner.fields.get(name)
            if definition is None:
                continue
            args = get_argument_values(definition, node, variables)
            if name == "rateLimit" and args.get("dryRun"):
                out.dry_run = True
            target = _named(definition.type)
            child = multiplier
            if target.name.endswith("Connection"):
                first, last = args.get("first"), args.get("last")
                if first is None and last is None:
                    out.errors.append({
                        "type": "MISSING_PAGINATION_BOUNDARIES", "path": path + [key], "locations": _loc(node),
                        "message": f"You must provide a `first` or `last` value to properly paginate the `{name}` connection."})
                    continue
                for arg, value in (("first", first), ("last", last)):
                    if value is not None and value > MAX_PAGE:
                        out.errors.append({
                            "type": "EXCESSIVE_PAGINATION", "path": path + [key], "locations": _loc(node),
                            "message": f"Requesting {value} records on the `{name}` connection exceeds the `{arg}` "
                                       f"limit of {MAX_PAGE} records."})
                    elif value is not None and value < 0:
                        out.errors.append({
                            "type": "INVALID_PAGINATION", "path": path + [key], "locations": _loc(node),
                            "message": f"`{arg}` on the `{name}` connection cannot be less than zero."})
                page = max(first or 0, last or 0)
                out.requests += multiplier
                out.nodes += multiplier * page
                child = multiplier * page
            subs = [n.selection_set for n, _ in nodes if n.selection_set is not None]
            for sub in subs:
                walk(sub, target, child, path + [key])

    root = schema.query_type
    walk(operation.selection_set, root, 1, [operation.operation.value])
    if out.nodes > NODE_LIMIT:
        out.errors.append({"type": "MAX_NODE_LIMIT_EXCEEDED", "path": [operation.operation.value],
                           "locations": _loc(operation),
                           "message": f"This query requests up to {out.nodes:,} possible nodes which exceeds the "
                                      f"maximum limit of {NODE_LIMIT:,}."})
    return out


# ------------------------------------------------------------------------------------------------
# the points budget


class PointsQuota:
    """GitHub's GraphQL primary limit: ``limit`` points per token per hour (fixed window, wall clock)."""

    def __init__(self, per_hour: int) -> None:
        self.limit = per_hour
        self.windows: dict[str, list[float]] = {}  # token -> [window start epoch, points used]
        self.lock = threading.Lock()

    def _window(self, token: str) -> list[float]:
        now = time.time()
        w = self.windows.get(token)
        if w is None or now >= w[0] + 3600:
            w = self.windows[token] = [now, 0]
        return w

    def info(self, token: str | None) -> dict[str, Any]:
        with self.lock:
            w = self._window(token or "")
            used = int(w[1])
            return {"limit": self.limit, "remaining": max(0, self.limit - used), "used": used,
                    "reset": int(w[0] + 3600), "resource": "graphql"}

    def take(self, token: str | None, points: int) -> tuple[bool, dict[str, Any]]:
        """Charge ``points`` if that many are left; (charged, info after)."""
        with self.lock:
            w = self._window(token or "")
            ok = self.limit - int(w[1]) >= points
            if ok:
                w[1] = int(w[1]) + points
        return ok, self.info(token)


# ------------------------------------------------------------------------------------------------
# the records, as GraphQL objects (graphql-core's default resolver reads attributes and calls methods)


def _page(keys: list[tuple[datetime, int]], n: int, desc: bool, first: int | None, last: int | None,
          after: tuple[datetime, int] | None, before: tuple[datetime, int] | None) -> tuple[int, int, bool, bool]:
    """Relay slicing over the first ``n`` entries of an ascending key list, viewed ascending or
    descending: the page as an ascending index range [a, b), and hasNextPage / hasPreviousPage."""
    if desc:  # view order: newest first; after = older than the cursor, before = newer
        lo = bisect.bisect_right(keys, before, 0, n) if before else 0
        hi = bisect.bisect_left(keys, after, 0, n) if after else n
        if first is not None:
            lo = max(lo, hi - first)
        if last is not None:
            hi = min(hi, lo + last)
        return lo, hi, lo > 0, hi < n
    lo = bisect.bisect_right(keys, after, 0, n) if after else 0
    hi = bisect.bisect_left(keys, before, 0, n) if before else n
    if first is not None:
        hi = min(hi, lo + first)
    if last is not None:
        lo = max(lo, hi - last)
    return lo, hi, hi < n, lo > 0


class _Connection:
    def __init__(self, items: list[Any], total: int, has_next: bool, has_prev: bool,
                 cursor: Callable[[Any], str], wrap: Callable[[Any], Any]) -> None:
        self._items, self._total, self._next, self._prev = items, total, has_next, has_prev
        self._cursor, self._wrap = cursor, wrap

    def nodes(self, info: Any) -> list[Any]:
        return [self._wrap(x) for x in self._items]

    def edges(self, info: Any) -> list[dict[str, Any]]:
        return [{"cursor": self._cursor(x), "node": self._wrap(x)} for x in self._items]

    def pageInfo(self, info: Any) -> dict[str, Any]:  # noqa: N802 - GraphQL field name
        return {"hasNextPage": self._next, "hasPreviousPage": self._prev,
                "startCursor": self._cursor(self._items[0]) if self._items else None,
                "endCursor": self._cursor(self._items[-1]) if self._items else None}

    def totalCount(self, info: Any) -> int:  # noqa: N802
        return self._total


class _Actor:
    def __init__(self, ctx: "_Context", login: str) -> None:
        self.ctx, self.login = ctx, login
        self.typename = "Bot" if login.endswith("[bot]") or login.endswith("-bot") else "User"
        self.databaseId = _int_id("user:" + login)
        self.id = ctx.node_id(self.typename, self.databaseId)
        self.name = login
        self.resourcePath = f"/{login}"
        self.url = f"https://github.com/{login}"

    def avatarUrl(self, info: Any, size: int | None = None) -> str:  # noqa: N802
        return f"https://avatars.githubusercontent.com/u/{self.databaseId}?v=4" + (f"&s={size}" if size else "")


class _Status:
    typename = "DeploymentStatus"

    def __init__(self, ctx: "_Context", d: Deployment, s: DeploymentStatus) -> None:
        self.ctx, self.d, self.s = ctx, d, s
        self.id = ctx.node_id("DeploymentStatus", s.id, repo=d.repo)
        self.state = s.state.upper()
        self.createdAt = self.updatedAt = fmt_time(s.created_at)
        self.description = s.description
        self.environment = d.environment
        self.environmentUrl = None  # the REST emulation sends "" for both
        self.logUrl = None

    def creator(self, info: Any) -> _Actor:
        return _Actor(self.ctx, self.d.creator_login or "deploy-bot")

    def deployment(self, info: Any) -> "_Deployment":
        return _Deployment(self.ctx, self.d)


class _Deployment:
    typename = "Deployment"

    def __init__(self, ctx: "_Context", d: Deployment) -> None:
        self.ctx, self.d = ctx, d
        self.id = ctx.node_id("Deployment", d.id, repo=d.repo)
        self.databaseId = d.id
        self.commitOid = d.sha
        self.createdAt = fmt_time(d.created_at)
        self.environment = self.latestEnvironment = self.originalEnvironment = d.environment
        self.task = d.task
        self.description = f"Deploy {d.sha[:7]} to {d.environment}"  # as the REST emulation says
        self.payload = "{}"

    def _statuses(self) -> tuple[list[tuple[datetime, int]], list[DeploymentStatus], int]:
        keys, items = self.ctx.api.graphql.statuses_of(self.d)
        return keys, items, bisect.bisect_right(keys, (self.ctx.now, math.inf))

    def updatedAt(self, info: Any) -> str:  # noqa: N802 - as REST: moves with each status
        keys, _, n = self._statuses()
        return fmt_time(max([self.d.created_at] + [k[0] for k in keys[:n]]))

    def state(self, info: Any) -> str:
        keys, items, n = self._statuses()
        if not n:
            return "PENDING"
        latest = items[n - 1].state
        return "ACTIVE" if latest == "success" else latest.upper()

    def creator(self, info: Any) -> _Actor:
        return _Actor(self.ctx, self.d.creator_login or "ghost")  # GitHub's placeholder for a deleted user

    def ref(self, info: Any) -> dict[str, str]:
        return {"id": self.ctx.node_id("Ref", _int_id(f"ref:{self.d.repo}:{self.d.ref}")), "name": self.d.ref,
                "prefix": "refs/heads/"}

    def repository(self, info: Any) -> "_Repository":
        return _Repository(self.ctx, self.ctx.api.repos[self.d.repo.lower()])

    def latestStatus(self, info: Any) -> _Status | None:  # noqa: N802
        keys, items, n = self._statuses()
        return _Status(self.ctx, self.d, items[n - 1]) if n else None

    def statuses(self, info: Any, first: int | None = None, last: int | None = None, after: str | None = None,
                 before: str | None = None) -> _Connection:
        keys, items, n = self._statuses()  # newest first, like REST
        a, b, has_next, has_prev = _page(keys, n, True, first, last, after and _cursor_key(after, "after"),
                                         before and _cursor_key(before, "before"))
        page = items[a:b][::-1]
        return _Connection(page, n, has_next, has_prev, lambda s: _cursor(s.created_at, s.id),
                           lambda s: _Status(self.ctx, self.d, s))


class _Repository:
    typename = "Repository"

    def __init__(self, ctx: "_Context", repo: Repo) -> None:
        self.ctx, self.repo = ctx, repo
        self.id = ctx.node_id("Repository", repo.id)
        self.databaseId = repo.id
        self.name = repo.full_name.split("/", 1)[1]
        self.nameWithOwner = repo.full_name
        self.isPrivate = repo.private
        self.url = f"https://github.com/{repo.full_name}"

    def deployments(self, info: Any, first: int | None = None, last: int | None = None, after: str | None = None,
                    before: str | None = None, environments: list[str] | None = None,
                    orderBy: dict[str, str] | None = None) -> _Connection:  # noqa: N803
        keys, items = self.ctx.api.graphql.deployments_of(self.repo.full_name, environments)
        n = bisect.bisect_right(keys, (self.ctx.now, math.inf))
        desc = (orderBy or {}).get("direction") == "DESC"
        a, b, has_next, has_prev = _page(keys, n, desc, first, last, after and _cursor_key(after, "after"),
                                         before and _cursor_key(before, "before"))
        page = items[a:b][::-1] if desc else items[a:b]
        return _Connection(page, n, has_next, has_prev, lambda d: _cursor(d.created_at, d.id),
                           lambda d: _Deployment(self.ctx, d))


@dataclass
class _Context:
    api: "GitHubApi"
    now: datetime
    next_ids: bool
    cost: QueryCost
    quota: dict[str, Any]

    def node_id(self, kind: str, n: int, repo: str | None = None) -> str:
        if self.next_ids and kind in NEXT_ID_PREFIX:
            scope = self.api.repos[repo.lower()].id if repo else None
            return next_node_id(kind, *([scope] if scope is not None else []), n)
        return _node_id(kind, n)


class _Root:
    def __init__(self, ctx: _Context) -> None:
        self.ctx = ctx

    def repository(self, info: Any, owner: str, name: str, followRenames: bool = True) -> _Repository | None:  # noqa: N803
        if self.ctx.cost.dry_run:
            return None
        repo = self.ctx.api.repos.get(f"{owner}/{name}".lower())
        if repo is None or not repo.accessible:
            raise GraphQLError(f"Could not resolve to a Repository with the name '{owner}/{name}'.",
                               extensions={"type": "NOT_FOUND"})
        return _Repository(self.ctx, repo)

    def node(self, info: Any, id: str) -> Any:  # noqa: A002
        if self.ctx.cost.dry_run:
            return None
        found = self._node(id)
        if found is None:
            raise GraphQLError(f"Could not resolve to a node with the global id of '{id}'",
                               extensions={"type": "NOT_FOUND"})
        return found

    def _node(self, node_id: str) -> Any:
        decoded = decode_node_id(node_id)
        if decoded is None:
            return None
        kind, n = decoded
        api, now = self.ctx.api, self.ctx.now
        if kind == "Deployment":
            d = api.deployment_by_id.get(n)
            if d is not None and d.created_at <= now and api.repos[d.repo.lower()].accessible:
                return _Deployment(self.ctx, d)
        elif kind == "DeploymentStatus":
            hit = api.graphql.status_by_id.get(n)
            if hit is not None and hit[1].created_at <= now and api.repos[hit[0].repo.lower()].accessible:
                return _Status(self.ctx, *hit)
        elif kind == "Repository":
            repo = next((r for r in api.repos.values() if r.id == n and r.accessible), None)
            return _Repository(self.ctx, repo) if repo else None
        return None

    def rateLimit(self, info: Any, dryRun: bool = False) -> dict[str, Any]:  # noqa: N802, N803
        q = self.ctx.quota
        return {"cost": self.ctx.cost.points, "limit": q["limit"], "nodeCount": self.ctx.cost.nodes,
                "remaining": q["remaining"], "used": q["used"],
                "resetAt": datetime.fromtimestamp(q["reset"], tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}

    def viewer(self, info: Any) -> _Actor:
        return _Actor(self.ctx, "emulator-bot")


# ------------------------------------------------------------------------------------------------
# the endpoint


def _validation_error(err: GraphQLError) -> dict[str, Any]:
    """graphql-core's validation error in GitHub's wording and shape (``extensions.code``)."""
    msg = err.message
    out: dict[str, Any] = {"locations": [{"line": loc.line, "column": loc.column} for loc in err.locations or []]}
    if msg.startswith("Cannot query field '"):
        name, rest = msg[len("Cannot query field '"):].split("'", 1)
        type_name = rest.split("'")[1]
        out.update(message=f"Field '{name}' doesn't exist on type '{type_name}'",
                   extensions={"code": "undefinedField", "typeName": type_name, "fieldName": name})
    elif msg.startswith("Unknown argument '"):
        arg, rest = msg[len("Unknown argument '"):].split("'", 1)
        owner, _, fname = rest.split("'")[1].rpartition(".")
        out.update(message=f"Field '{fname}' doesn't accept argument '{arg}'",
                   extensions={"code": "argumentNotAccepted", "name": fname, "typeName": "Field", "argumentName": arg})
    elif " is required, but it was not provided." in msg and msg.startswith("Field '"):
        fname = msg.split("'")[1]
        arg = msg.split("argument '")[1].split("'")[0]
        out.update(message=f"Field '{fname}' is missing required arguments: {arg}",
                   extensions={"code": "missingRequiredArguments", "className": "Field", "name": fname, "arguments": arg})
    else:
        out.update(message=msg, extensions={"code": "validationError"})
    return {"message": out.pop("message"), **out}


def _execution_error(err: GraphQLError) -> dict[str, Any]:
    ext = dict(err.extensions or {})
    out: dict[str, Any] = {}
    if "type" in ext:
        out["type"] = ext.pop("type")
    if err.path is not None:
        out["path"] = list(err.path)
    if err.locations:
        out["locations"] = [{"line": loc.line, "column": loc.column} for loc in err.locations]
    out["message"] = err.message if err.original_error is None or isinstance(err.original_error, GraphQLError) \
        else "Something went wrong while executing your query. This may be the result of a timeout, or it could be a GitHub bug."
    if ext:
        out["extensions"] = ext
    return out


class GitHubGraphQL:
    """``POST /graphql`` over the REST emulation's organisation and indexes (``GitHubApi``)."""

    def __init__(self, api: "GitHubApi", points_per_hour: int = 5000) -> None:
        self.api = api
        self.schema: GraphQLSchema | None = None
        self._extra_states: tuple[str, ...] | None = None
        self.quota = PointsQuota(points_per_hour)
        self.reindex()

    def _build_schema(self, extra_states: tuple[str, ...]) -> GraphQLSchema:
        """The schema; a status state the organisation holds beyond GitHub's enum (a test's bad input)
        becomes one more enum value, as when GitHub adds a state, so it reaches the client as sent."""
        sdl = SDL.replace("%(extra_states)s", "".join(f"\n  {s}" for s in extra_states))
        schema = build_schema(sdl)
        for name in ("Node", "Actor"):
            iface = schema.get_type(name)
            iface.resolve_type = lambda obj, info, type_: getattr(obj, "typename", None)  # type: ignore[union-attr]
        return schema

    def reindex(self) -> None:
        """Per repository (and per repository and environment): deployments sorted by (created_at, id)
        with their keys, for bisect; per deployment: statuses the same way."""
        by_repo: dict[str, list[Deployment]] = {}
        by_env: dict[tuple[str, str], list[Deployment]] = {}
        self._statuses: dict[int, tuple[list[tuple[datetime, int]], list[DeploymentStatus]]] = {}
        self.status_by_id: dict[int, tuple[Deployment, DeploymentStatus]] = {}
        for d in self.api.org.deployments:
            by_repo.setdefault(d.repo.lower(), []).append(d)
            by_env.setdefault((d.repo.lower(), d.environment), []).append(d)
            sts = sorted(d.statuses, key=lambda s: (s.created_at, s.id))
            self._statuses[d.id] = ([(s.created_at, s.id) for s in sts], sts)
            for s in sts:
                self.status_by_id[s.id] = (d, s)

        def keyed(ds: list[Deployment]) -> tuple[list[tuple[datetime, int]], list[Deployment]]:
            ds = sorted(ds, key=lambda d: (d.created_at, d.id))
            return [(d.created_at, d.id) for d in ds], ds

        self._by_repo = {k: keyed(v) for k, v in by_repo.items()}
        self._by_env = {k: keyed(v) for k, v in by_env.items()}
        extra = tuple(sorted({s.state.upper() for _, s in self.status_by_id.values()} - KNOWN_STATES))
        if extra != self._extra_states:
            self.schema, self._extra_states = self._build_schema(extra), extra

    def deployments_of(self, full_name: str, environments: list[str] | None) -> tuple[list[tuple[datetime, int]], list[Deployment]]:
        key = full_name.lower()
        if not environments:
            return self._by_repo.get(key, ([], []))
        if len(environments) == 1:
            return self._by_env.get((key, environments[0]), ([], []))
        merged = sorted((d for e in set(environments) for d in self._by_env.get((key, e), ([], []))[1]),
                        key=lambda d: (d.created_at, d.id))
        return [(d.created_at, d.id) for d in merged], merged

    def statuses_of(self, d: Deployment) -> tuple[list[tuple[datetime, int]], list[DeploymentStatus]]:
        return self._statuses.get(d.id, ([], []))

    # ---------------------------------------------------------------------------------- HTTP

    def _answer(self, payload: dict[str, Any], quota: dict[str, Any], status: int = 200) -> Response:
        return Response.json(status, payload, [
            ("x-ratelimit-limit", str(quota["limit"])), ("x-ratelimit-remaining", str(quota["remaining"])),
            ("x-ratelimit-used", str(quota["used"])), ("x-ratelimit-reset", str(quota["reset"])),
            ("x-ratelimit-resource", "graphql")])

    def handle(self, req: Request, params: dict[str, str] | None = None) -> Response:
        try:
            body = json.loads(req.body.decode("utf-8") or "null")
        except (ValueError, UnicodeDecodeError):
            return Response.json(400, {"message": "Problems parsing JSON", "documentation_url": DOCS, "status": "400"})
        next_ids = (req.headers.get("X-Github-Next-Global-ID") or "").strip() == "1"
        payload, quota = self._run(body, req.token, next_ids=next_ids, charge=True)
        return self._answer(payload, quota)

    def execute(self, query: str, variables: dict[str, Any] | None = None, *, next_ids: bool = False) -> dict[str, Any]:
        """The response body ``POST /graphql`` would give, without HTTP and without spending points
        (for tools that fill a warehouse without a server, e.g. ``benchmarks/seed_warehouse.py``:
        ``GitHubClient``'s ``DEPLOYMENTS_QUERY`` answered here and mapped with
        ``deployment_from_graphql`` / ``status_from_graphql`` gives the rows a nightly run stores)."""
        payload, _ = self._run({"query": query, "variables": variables or {}}, None, next_ids=next_ids, charge=False)
        return payload

    def _run(self, body: Any, token: str | None, *, next_ids: bool, charge: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """(response body, points budget after) of one GraphQL request body."""
        quota = self.quota.info(token)
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return {"errors": [{"message": "A query attribute must be specified and must be a string."}]}, quota
        variables = body.get("variables") or {}
        if not isinstance(variables, dict):
            return {"errors": [{"message": "Variables are invalid JSON."}]}, quota
        operation_name = body.get("operationName") or None
        try:
            doc = parse(body["query"])
        except GraphQLSyntaxError as e:
            return {"errors": [{"message": f"Parse error: {e.message}",
                                "locations": [{"line": loc.line, "column": loc.column} for loc in e.locations or []]}]}, quota
        errors = validate(self.schema, doc)
        if errors:
            return {"errors": [_validation_error(e) for e in errors]}, quota
        operation = get_operation_ast(doc, operation_name)
        if operation is None:
            msg = (f'No operation named "{operation_name}"' if operation_name
                   else "An operation name is required when sending multiple operations.")
            return {"errors": [{"message": msg}]}, quota
        coerced = get_variable_values(self.schema, operation.variable_definitions or [], variables)
        if isinstance(coerced, list):
            return {"errors": [_execution_error(e) for e in coerced]}, quota
        cost = query_cost(self.schema, doc, operation, coerced)
        if cost.errors:
            return {"errors": cost.errors}, quota
        if cost.dry_run or not charge:
            charged = True
        else:
            charged, quota = self.quota.take(token, cost.points)
        if not charged:
            return {"errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded for user ID 1."}]}, quota
        ctx = _Context(self.api, self.api.clock(), next_ids, cost, quota)
        result = execute(self.schema, doc, root_value=_Root(ctx), context_value=ctx, variable_values=variables,
                         operation_name=operation_name)
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [_execution_error(e) for e in result.errors]
        return payload, quota
