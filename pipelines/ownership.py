"""Who owns what, and since when: ownership.yaml (or Backstage catalog files), validated.

The ownership file is the source of truth for teams (time zone, business hours, adoption date), the
services each team owns over time (each named by its id in one or more paging sources) and the repos
(on one or more git hosts) that deploy each service. Which sources exist, and their own spellings in
the file, come from the registry of connectors. A bad file fails with ``file:line: reason`` so it
can be fixed without guessing. The format is described in docs/ownership.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import yaml

from pipelines import warehouse as wh
from pipelines.connectors import CONNECTORS
from pipelines.errors import UserFacingError
from pipelines.ingest.contract import Connector

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TEAM_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")

SourceId = tuple[str, str]  # (source, the id or repo path in that source): how services and repos are named


def _sources(connectors: tuple[Connector, ...], kind: str) -> dict[str, Connector]:
    return {c.name: c for c in connectors if c.kind == kind}


class OwnershipError(UserFacingError, ValueError):
    """A problem in the ownership file; the message starts with ``file:line:`` and says what to fix."""


@dataclass(frozen=True)
class TeamSpec:
    key: str
    name: str
    time_zone: str
    business_hours_start: time
    business_hours_end: time
    business_days: tuple[int, ...]
    adopted_on: date | None
    ids: tuple[SourceId, ...] = ()  # the team's id in each paging source that names it


@dataclass(frozen=True)
class OwnerPeriod:
    team_key: str
    valid_from: date | None  # None: since the beginning of history
    valid_to: date | None  # exclusive; None: still the owner


@dataclass(frozen=True)
class ServiceSpec:
    ids: tuple[SourceId, ...]  # the service's id in each paging source that pages for it (one or more)
    name: str
    repos: tuple[SourceId, ...]  # (git source, repo path) of each repo deploying it
    owners: tuple[OwnerPeriod, ...]  # empty for a service marked unowned
    unowned: bool = False  # listed on purpose with no owner (e.g. a shared alerting sink)

    @property
    def label(self) -> str:
        """How messages name the service: its first id."""
        return self.ids[0][1]

    @property
    def key(self) -> str:
        """The service, whichever of its ids an incident names: ``<source>:<id>`` of its first id."""
        return f"{self.ids[0][0]}:{self.ids[0][1]}"


@dataclass
class Ownership:
    source: str
    teams: list[TeamSpec] = field(default_factory=list)
    services: list[ServiceSpec] = field(default_factory=list)

    def teams_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "team_key": t.key,
                    "team_name": t.name,
                    "source_team_ids": json.dumps(dict(t.ids), sort_keys=True),
                    "time_zone": t.time_zone,
                    "business_hours_start": t.business_hours_start.strftime("%H:%M"),
                    "business_hours_end": t.business_hours_end.strftime("%H:%M"),
                    # ISO weekday numbers (Monday = 1), as DuckDB's isodow() returns them
                    "business_isodows": ",".join(str(d + 1) for d in t.business_days),
                    "adopted_on": t.adopted_on,
                }
                for t in self.teams
            ],
            columns=[
                "team_key", "team_name", "source_team_ids", "time_zone", "business_hours_start",
                "business_hours_end", "business_isodows", "adopted_on",
            ],
        )

    def service_owners_frame(self) -> pd.DataFrame:
        """One row per service id and owning period (a service paged from two sources: rows for each)."""
        rows = []
        for s in self.services:
            # an explicitly unowned service: one row without a team, so it counts as known
            periods = [(p.team_key, p.valid_from, p.valid_to) for p in s.owners] or [(None, None, None)]
            rows += [
                {"service_key": s.key, "source": source, "service_id": sid, "service_name": s.name, "team_key": team,
                 "valid_from": start, "valid_to": end}
                for source, sid in s.ids
                for team, start, end in periods
            ]
        return pd.DataFrame(rows, columns=["service_key", "source", "service_id", "service_name", "team_key",
                                           "valid_from", "valid_to"])

    def service_repos_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [{"source": source, "service_id": sid, "repo_source": repo_source, "repo": repo}
             for s in self.services for source, sid in s.ids for repo_source, repo in s.repos],
            columns=["source", "service_id", "repo_source", "repo"],
        )

    def repos_of(self, source: str) -> list[str]:
        """The repos on one git host that deploy any service, sorted."""
        return sorted({repo for s in self.services for repo_source, repo in s.repos if repo_source == source})


# --------------------------------------------------------------------------- YAML with line numbers


class _Node:
    """A parsed YAML value with the (1-based) line it started on."""

    __slots__ = ("value", "line")

    def __init__(self, value: Any, line: int):
        self.value = value
        self.line = line


def _compose(text: str, source: str) -> _Node | None:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise OwnershipError(f"{source}:{line}: not valid YAML: {exc.problem or exc}") from None
    return _convert(root) if root is not None else None


def _convert(node: yaml.Node) -> _Node:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, _Node] = {}
        for key_node, value_node in node.value:
            out[str(key_node.value)] = _convert(value_node)
            out[str(key_node.value)].line = value_node.start_mark.line + 1
        return _Node(out, line)
    if isinstance(node, yaml.SequenceNode):
        return _Node([_convert(n) for n in node.value], line)
    # scalars: let PyYAML resolve the type (dates, ints, nulls, booleans)
    value = yaml.SafeLoader("").construct_object(node)  # type: ignore[arg-type]
    return _Node(value, line)


class _Reader:
    def __init__(self, source: str, connectors: tuple[Connector, ...]):
        self.source = source
        self.connectors = connectors

    def sources(self, kind: str) -> dict[str, Connector]:
        return _sources(self.connectors, kind)

    def fail(self, line: int, message: str) -> OwnershipError:
        return OwnershipError(f"{self.source}:{line}: {message}")

    def mapping(self, node: _Node, what: str, allowed: set[str]) -> dict[str, _Node]:
        if not isinstance(node.value, dict):
            raise self.fail(node.line, f"{what} must be a mapping")
        unknown = sorted(set(node.value) - allowed)
        if unknown:
            key = unknown[0]
            raise self.fail(
                node.value[key].line,
                f"unknown key {key!r} in {what} (allowed: {', '.join(sorted(allowed))})",
            )
        return node.value

    def required(self, m: dict[str, _Node], key: str, what: str, line: int) -> _Node:
        if key not in m or m[key].value in (None, ""):
            raise self.fail(line, f"{what} is missing required key {key!r}")
        return m[key]

    def string(self, node: _Node, what: str) -> str:
        if not isinstance(node.value, str) or not node.value.strip():
            raise self.fail(node.line, f"{what} must be a non-empty string, got {node.value!r}")
        return node.value.strip()

    def optional_date(self, node: _Node | None, what: str) -> date | None:
        if node is None or node.value is None:
            return None
        value = node.value
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise self.fail(node.line, f"{what} must be a date like 2025-06-01, got {value!r}")

    def source_ids(self, m: dict[str, _Node], what: str, alias_of: dict[str, str]) -> list[tuple[str, str, int]]:
        """``ids: {<paging source>: <id>}`` and the sources' alias keys (``alias_of``: key -> source),
        as (source, id, line)."""
        paging = self.sources("paging")
        found: dict[str, tuple[str, int]] = {}

        def add(source: str, node: _Node, key: str) -> None:
            value = self.string(node, f"{key} of {what}")
            if source in found and found[source][0] != value:
                raise self.fail(node.line, f"{what}: two {paging[source].label} ids, {found[source][0]!r} and {value!r}")
            found.setdefault(source, (value, node.line))

        if "ids" in m and m["ids"].value is not None:
            ids = self.mapping(m["ids"], f"the ids of {what}", set(paging))
            for source, node in ids.items():
                add(source, node, f"ids.{source}")
        for key, source in alias_of.items():
            if key in m and m[key].value not in (None, ""):
                add(source, m[key], key)
        return [(source, value, line) for source, (value, line) in found.items()]

    def repo(self, node: _Node, service: str) -> SourceId:
        """A repo entry: a bare path (on the host whose connector takes plain repos), or
        ``{<git source>: <path>}``."""
        git = self.sources("git")
        if isinstance(node.value, dict):
            if len(node.value) != 1:
                raise self.fail(node.line, f"a repo of service {service!r} names one host and one path, "
                                           f"like {{{next(iter(git), 'host')}: {_example(git)}}}")
            source, path_node = next(iter(self.mapping(node, f"a repo of service {service!r}", set(git)).items()))
        else:
            plain = [c.name for c in git.values() if c.ownership.plain_repos]
            if not plain:
                raise self.fail(node.line, f"repo {node.value!r} of service {service!r} must name its host "
                                           f"({', '.join(git)})")
            source, path_node = plain[0], node
        if isinstance(path_node.value, int) and not isinstance(path_node.value, bool):
            path_node = _Node(str(path_node.value), path_node.line)  # a numeric id, for hosts that allow it
        path = self.string(path_node, "repo")
        names = git[source].ownership
        if not re.match(names.repo_pattern, path):
            raise self.fail(path_node.line, f"repo {path!r} must look like {names.repo_example}")
        return source, path

    def clock(self, node: _Node, what: str) -> time:
        value = node.value
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads an unquoted 09:00 as a sexagesimal integer (540)
            value = f"{value // 60:02d}:{value % 60:02d}"
        if not isinstance(value, str) or not _HHMM.match(value):
            raise self.fail(node.line, f"{what} must be a time like \"09:00\", got {node.value!r}")
        return time.fromisoformat(value)


def _example(git: dict[str, Connector]) -> str:
    return next(iter(git.values())).ownership.repo_example if git else "owner/name"


def load_ownership(path: str | Path) -> Ownership:
    """Read and validate an ownership file: ownership.yaml, or Backstage catalog files.

    A path to a directory, or to a file whose documents have ``kind:`` (Backstage), is read as a
    Backstage catalog; anything else as ownership.yaml.
    """
    p = Path(path)
    if p.is_dir():
        return load_backstage_catalog(sorted(p.rglob("catalog-info.y*ml")) or sorted(p.rglob("*.y*ml")))
    if not p.exists():
        raise OwnershipError(
            f"{p}:1: ownership file not found (set INCIDENT_METRICS_OWNERSHIP to the path of ownership.yaml)"
        )
    text = p.read_text(encoding="utf-8")
    if re.search(r"^kind:\s*(Component|Group)\b", text, flags=re.MULTILINE):
        return load_backstage_catalog([p])
    return parse_ownership(text, str(p))


def parse_ownership(text: str, source: str = "ownership.yaml", connectors: tuple[Connector, ...] = CONNECTORS) -> Ownership:
    """Validate an ownership.yaml; the sources it may name are those of ``connectors`` (the registry)."""
    r = _Reader(source, connectors)
    root = _compose(text, source)
    if root is None:
        raise r.fail(1, "the file is empty; it needs 'teams:' and 'services:'")
    top = r.mapping(root, "the file", {"version", "teams", "services"})
    if "version" in top and top["version"].value != 1:
        raise r.fail(top["version"].line, f"unsupported version {top['version'].value!r} (expected 1)")
    teams_node = r.required(top, "teams", "the file", root.line)
    services_node = top.get("services", _Node([], root.line))
    if not isinstance(teams_node.value, list) or not teams_node.value:
        raise r.fail(teams_node.line, "'teams' must be a non-empty list")
    if not isinstance(services_node.value, list):
        raise r.fail(services_node.line, "'services' must be a list")

    paging = r.sources("paging")
    team_aliases = {c.ownership.team_alias: c.name for c in paging.values() if c.ownership.team_alias}
    service_aliases = {c.ownership.service_alias: c.name for c in paging.values() if c.ownership.service_alias}
    teams: list[TeamSpec] = []
    seen_teams: dict[str, int] = {}
    for node in teams_node.value:
        m = r.mapping(node, "a team", {"key", "name", "ids", "time_zone", "business_hours", "adopted_on"} | set(team_aliases))
        key = r.string(r.required(m, "key", "a team", node.line), "team key")
        if not _TEAM_KEY.match(key):
            raise r.fail(m["key"].line, f"team key {key!r} must be lower-case letters, digits, '-' or '_'")
        if key in seen_teams:
            raise r.fail(m["key"].line, f"team {key!r} is defined twice (first on line {seen_teams[key]})")
        seen_teams[key] = m["key"].line
        tz_node = m.get("time_zone", _Node("UTC", node.line))
        tz = r.string(tz_node, f"time_zone of team {key!r}")
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise r.fail(tz_node.line, f"unknown time zone {tz!r} for team {key!r} (use an IANA name like Europe/Berlin)") from None
        start, end, days = time(9, 0), time(17, 0), (0, 1, 2, 3, 4)
        if "business_hours" in m and m["business_hours"].value is not None:
            bh = r.mapping(m["business_hours"], f"business_hours of team {key!r}", {"start", "end", "days"})
            if "start" in bh:
                start = r.clock(bh["start"], "business_hours.start")
            if "end" in bh:
                end = r.clock(bh["end"], "business_hours.end")
            if start >= end:
                raise r.fail(m["business_hours"].line, f"business_hours of team {key!r}: start must be before end")
            if "days" in bh:
                if not isinstance(bh["days"].value, list) or not bh["days"].value:
                    raise r.fail(bh["days"].line, "business_hours.days must be a list like [mon, tue, wed, thu, fri]")
                parsed = []
                for d in bh["days"].value:
                    name = str(d.value).strip().lower()[:3]
                    if name not in DAY_NAMES:
                        raise r.fail(d.line, f"unknown day {d.value!r} (use mon..sun)")
                    parsed.append(DAY_NAMES.index(name))
                days = tuple(sorted(set(parsed)))
        teams.append(
            TeamSpec(
                key=key,
                name=r.string(m["name"], f"name of team {key!r}") if m.get("name") and m["name"].value else key,
                time_zone=tz,
                business_hours_start=start,
                business_hours_end=end,
                business_days=days,
                adopted_on=r.optional_date(m.get("adopted_on"), f"adopted_on of team {key!r}"),
                ids=tuple((source, value) for source, value, _ in r.source_ids(m, f"team {key!r}", team_aliases)),
            )
        )

    services: list[ServiceSpec] = []
    seen_services: dict[SourceId, int] = {}
    for node in services_node.value:
        m = r.mapping(node, "a service", {"ids", "name", "repos", "owners", "owner", "unowned"} | set(service_aliases))
        found = r.source_ids(m, "a service", service_aliases)
        if not found:
            first = next(iter(paging), "source")
            raise r.fail(node.line, f"a service needs its id in a paging source, like 'ids: {{{first}: <service id>}}' "
                                    f"(paging sources: {', '.join(paging)})")
        ids = tuple((source, value) for source, value, _ in found)
        sid = ids[0][1]
        for source, value, line in found:
            if (source, value) in seen_services:
                raise r.fail(line, f"service {value!r} is listed twice (first on line {seen_services[source, value]})")
            seen_services[source, value] = line
        name = r.string(m["name"], "service name") if m.get("name") and m["name"].value else sid
        repos: list[SourceId] = []
        if "repos" in m and m["repos"].value is not None:
            if not isinstance(m["repos"].value, list):
                raise r.fail(m["repos"].line, f"repos of service {sid!r} must be a list")
            repos = [r.repo(rn, sid) for rn in m["repos"].value]
        periods: list[tuple[str, date | None, int]] = []
        unowned = "unowned" in m and m["unowned"].value is True
        if "unowned" in m and not isinstance(m["unowned"].value, bool):
            raise r.fail(m["unowned"].line, f"service {sid!r}: unowned must be true or false")
        if unowned and ("owner" in m or "owners" in m):
            raise r.fail(m["unowned"].line, f"service {sid!r}: an unowned service cannot also have an owner")
        if "owner" in m and "owners" in m:
            raise r.fail(m["owner"].line, f"service {sid!r}: give either 'owner' or 'owners', not both")
        if unowned:
            pass  # known, owned by nobody: its incidents count for no team
        elif "owner" in m:
            team = r.string(m["owner"], "owner")
            periods.append((team, None, m["owner"].line))
        elif "owners" in m and isinstance(m["owners"].value, list) and m["owners"].value:
            for pn in m["owners"].value:
                pm = r.mapping(pn, f"an owner of service {sid!r}", {"team", "from"})
                team = r.string(r.required(pm, "team", f"an owner of service {sid!r}", pn.line), "owner team")
                periods.append((team, r.optional_date(pm.get("from"), "from"), pm["team"].line))
        else:
            raise r.fail(node.line, f"service {sid!r} has no owner (add 'owner: <team>', an 'owners:' list, "
                                    "or 'unowned: true' if nobody owns it on purpose)")
        for team, _, line in periods:
            if team not in seen_teams:
                raise r.fail(line, f"service {sid!r} is owned by unknown team {team!r}")
        for i, (_, start, line) in enumerate(periods):
            if i > 0 and start is None:
                raise r.fail(line, f"service {sid!r}: every owner after the first needs a 'from' date")
            if i > 0 and periods[i - 1][1] is not None and start <= periods[i - 1][1]:
                raise r.fail(line, f"service {sid!r}: owner 'from' dates must increase")
        owners = tuple(
            OwnerPeriod(team, start, periods[i + 1][1] if i + 1 < len(periods) else None)
            for i, (team, start, _) in enumerate(periods)
        )
        services.append(ServiceSpec(ids=ids, name=name, repos=tuple(repos), owners=owners, unowned=unowned))

    return Ownership(source=source, teams=teams, services=services)


# --------------------------------------------------------------------------- Backstage catalog

# Our own annotations on Group entities (Backstage has no field for these):
ANNOTATION_TZ = "incident-metrics/time-zone"
ANNOTATION_ADOPTED = "incident-metrics/adopted-on"
ANNOTATION_HOURS = "incident-metrics/business-hours"  # "09:00-17:00 mon-fri"


def load_backstage_catalog(paths: list[Path], connectors: tuple[Connector, ...] = CONNECTORS) -> Ownership:
    """Teams from Backstage ``Group`` entities, services from ``Component`` entities.

    A Component is a service when it carries the service-id annotation of a paging source (each
    connector names its own, ``OwnershipNames.backstage_annotation``), and needs ``spec.owner``
    (``group:payments`` or ``payments``); a git host's repo-slug annotation names its repo. Backstage
    has no dated ownership, so each service has one owner for its whole history.
    """
    if not paths:
        raise OwnershipError("backstage catalog:1: no catalog-info.yaml files found")
    team_docs: list[tuple[str, int, dict]] = []
    component_docs: list[tuple[str, int, dict]] = []
    for path in paths:
        text = Path(path).read_text(encoding="utf-8")
        try:
            nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            raise OwnershipError(f"{path}:{mark.line + 1 if mark else 1}: not valid YAML: {exc.problem}") from None
        for node in nodes:
            if node is None:
                continue
            doc = yaml.safe_load(yaml.serialize(node)) or {}
            line = node.start_mark.line + 1
            kind = doc.get("kind") if isinstance(doc, dict) else None
            if kind == "Group":
                team_docs.append((str(path), line, doc))
            elif kind == "Component":
                component_docs.append((str(path), line, doc))
    # Re-express as ownership.yaml and validate through the same code; keep source lines in errors.
    teams = []
    for source, line, doc in team_docs:
        meta = doc.get("metadata") or {}
        ann = meta.get("annotations") or {}
        name = meta.get("name")
        if not name:
            raise OwnershipError(f"{source}:{line}: Group entity without metadata.name")
        hours = str(ann.get(ANNOTATION_HOURS, "09:00-17:00 mon-fri"))
        m = re.match(r"^\s*(\d\d:\d\d)-(\d\d:\d\d)\s+(\w{3})-(\w{3})\s*$", hours)
        if not m or m.group(3) not in DAY_NAMES or m.group(4) not in DAY_NAMES:
            raise OwnershipError(f"{source}:{line}: annotation {ANNOTATION_HOURS} must look like '09:00-17:00 mon-fri'")
        d0, d1 = DAY_NAMES.index(m.group(3)), DAY_NAMES.index(m.group(4))
        teams.append(
            {
                "key": str(name).lower(),
                "name": (doc.get("spec") or {}).get("profile", {}).get("displayName") or name,
                "time_zone": ann.get(ANNOTATION_TZ, "UTC"),
                "business_hours": {"start": m.group(1), "end": m.group(2), "days": list(DAY_NAMES[d0 : d1 + 1])},
                "adopted_on": ann.get(ANNOTATION_ADOPTED),
            }
        )
    services = []
    for source, line, doc in component_docs:
        meta = doc.get("metadata") or {}
        ann = meta.get("annotations") or {}
        spec = doc.get("spec") or {}
        ids = _annotated(connectors, ann, "paging")
        if not ids:
            continue  # a component no paging source pages for is not on call; nothing to measure
        owner = str(spec.get("owner") or "")
        if not owner:
            raise OwnershipError(f"{source}:{line}: Component {meta.get('name')!r} has no spec.owner")
        owner = owner.split(":", 1)[1] if owner.startswith("group:") else owner
        owner = owner.split("/", 1)[-1].lower()
        services.append(
            {
                "ids": ids,
                "name": meta.get("name") or next(iter(ids.values())),
                "repos": [{source: slug} for source, slug in _annotated(connectors, ann, "git").items()],
                "owner": owner,
            }
        )
    document = yaml.safe_dump({"version": 1, "teams": teams, "services": services}, sort_keys=False)
    try:
        return parse_ownership(document, "backstage catalog (" + ", ".join(str(p) for p in paths) + ")", connectors)
    except OwnershipError as exc:
        # Point at the entity, not at the generated document.
        raise OwnershipError(_backstage_hint(str(exc), team_docs, component_docs, connectors)) from None


def _annotated(connectors: tuple[Connector, ...], annotations: dict, kind: str) -> dict[str, Any]:
    """The ids a catalog entity's annotations give, by source, for the connectors of one kind."""
    return {c.name: annotations[c.ownership.backstage_annotation] for c in _sources(connectors, kind).values()
            if c.ownership.backstage_annotation and annotations.get(c.ownership.backstage_annotation)}


def _backstage_hint(message: str, team_docs, component_docs, connectors) -> str:
    """Re-point an error about the generated document at the catalog entity it came from."""
    detail = message.split(": ", 1)[1] if ": " in message else message
    for source, line, doc in component_docs + team_docs:
        meta = doc.get("metadata") or {}
        names = {str(meta.get("name") or "").lower(), *map(str, _annotated(connectors, meta.get("annotations") or {}, "paging").values())}
        if any(n and repr(n) in detail for n in names):
            return f"{source}:{line}: {detail}"
    return message


def load_ownership_tables(con, ownership: Ownership) -> dict[str, int]:
    """Rewrite raw.ownership_* from the validated ownership file, all three tables at once.

    They hold nothing but the file, so each is re-created from its DDL (sql/raw) first: a warehouse
    written by an older version gets today's columns without a migration."""
    frames = {
        "ownership_teams": ownership.teams_frame(),
        "ownership_service_owners": ownership.service_owners_frame(),
        "ownership_service_repos": ownership.service_repos_frame(),
    }
    with wh.transaction(con):
        for table in frames:
            con.execute(f"drop table if exists raw.{table}")
            con.execute(wh.sql_file("raw", table).text)
        return {table: wh.replace_frame(con, "raw", table, frame) for table, frame in frames.items()}
