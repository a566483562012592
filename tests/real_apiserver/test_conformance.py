"""Differential conformance: the same HTTP requests to the real kube-apiserver and to kubemirror.

A module-scoped setup creates objects on the real server (configmaps with labels,
pods with and without ``spec.nodeName``, one Running, a deployment, a service, two
secrets in a fresh namespace ``{ns}``; patch/delete targets in a second one
``{wns}``; the two Namespaces and a Node as cluster-scoped kinds, all labelled
``conformance=<run>``), LISTs them back and seeds exactly what the real server
returned into a fresh ``KubeApiServer``'s storage. Each row of the request matrix
(``conformance_cases.CASES``: method, path template, query, headers, body and the
parts of the answer to compare) is then sent with raw aiohttp to both servers, so
the suite sees the HTTP answers themselves, and becomes its own test case
(``<category>:<name>``). The real server's status code is checked against the row
first; then the compared projection of kubemirror's answer must equal the real one.

A row where kubemirror differs today carries its reason (``xfail=X_...``, or the
last column of a table row): it is a strict expected failure asserting the real
behaviour, so the fix turns it into an XPASS and that one line is changed. The
summary (cases, agreeing, differing by category, and each difference, real vs
kubemirror) is printed at the end of the module; set
``KUBEMIRROR_CONFORMANCE_SUMMARY=<file>`` to also write it to a file.

DEVIATIONS: intended differences. Rows with ``own=Own(...)`` check kubemirror's
answer against its intended one instead of the real one; Table columns are compared
without kubemirror's extra last column.

=========================  ==========================  =====================================
request                    kube-apiserver              kubemirror (by design)
=========================  ==========================  =====================================
any request with a         serves it (no Host check)   403 Forbidden Status: a local
foreign ``Host`` header                                server guards against DNS
                                                       rebinding (``accept_hosts`` widens)
a body in ``application/   decodes it (400 for         415 UnsupportedMediaType: bodies are
vnd.kubernetes.protobuf``  garbage)                    JSON (or YAML) only
a ``text/plain`` body      415, listing JSON, YAML     415, listing JSON and YAML
                           and protobuf
``continue`` token issued  continues from the token's  400 BadRequest: a token is bound to
for another resource or    key there (200)             the request that issued it
namespace
``Accept: ...as=Table``    the printer's columns       the same, plus a last ``Cluster``
                                                       column (priority 1): which mirrored
                                                       cluster the row comes from
=========================  ==========================  =====================================
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from kubemirror.client.transport import new_connector
from kubemirror.envtest import EnvTest
from kubemirror.multicluster.server import KubeApiServer
from kubemirror.testing import new_storage, seed
from kubemirror.types import GroupVersionResource
from tests.real_apiserver.conformance_cases import (
    CASES,
    WNS_CONFIGMAPS,
    WNS_DELETE_COLLECTION,
    WNS_DEPLOYMENTS,
    WNS_PODS,
    WNS_SCHEDULED_PODS,
    Case,
    Req,
)
from tests.real_apiserver.conftest import configmap, pod, unique

pytestmark = pytest.mark.asyncio(loop_scope="module")

SUMMARY_ENV = "KUBEMIRROR_CONFORMANCE_SUMMARY"
REQUEST_TIMEOUT = 15.0  # a safety net against a stream that never ends, not a synchronizer
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
OWN_TABLE_COLUMN = "Cluster"  # kubemirror's extra last Table column (DEVIATIONS)

KINDS: dict[str, tuple[GroupVersionResource, str]] = {
    "configmaps": (GroupVersionResource("", "v1", "configmaps"), "ConfigMap"),
    "pods": (GroupVersionResource("", "v1", "pods"), "Pod"),
    "secrets": (GroupVersionResource("", "v1", "secrets"), "Secret"),
    "services": (GroupVersionResource("", "v1", "services"), "Service"),
    "deployments": (GroupVersionResource("apps", "v1", "deployments"), "Deployment"),
}


# -- the two servers --------------------------------------------------------------------------


@dataclass
class Target:
    """One server: an aiohttp session, its base URL and its template context."""

    name: str
    session: aiohttp.ClientSession
    base: str
    ctx: dict[str, str] = field(default_factory=dict)


@dataclass
class Pair:
    real: Target
    own: Target


@dataclass
class Answer:
    status: int
    media_type: str
    raw: bytes = b""
    body: Any = None
    events: list[Any] | None = None
    timed_out: bool = False


def resource_path(gvr: GroupVersionResource, namespace: str = "") -> str:
    prefix = f"/apis/{gvr.group}/{gvr.version}" if gvr.group else f"/api/{gvr.version}"
    scope = f"/namespaces/{namespace}" if namespace else ""
    return f"{prefix}{scope}/{gvr.resource}"


async def call(target: Target, method: str, path: str, body: Any = None,
               ctype: str = "application/json", params: Mapping[str, str] | None = None,
               expect: int = 200) -> Any:
    """A setup request; returns the decoded JSON answer, which must have status ``expect``."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": ctype} if data is not None else {}
    async with target.session.request(method, target.base + path, data=data, headers=headers,
                                      params=params) as resp:
        payload = await resp.read()
        assert resp.status == expect, f"setup {method} {path}: {resp.status} {payload[:300]!r}"
        return json.loads(payload)


def labelled(obj: dict[str, Any], run: str, group: str = "") -> dict[str, Any]:
    """``obj`` labelled ``conformance=<run>`` (and ``set=<group>``: ro in {ns}, rw in {wns})."""
    labels = obj["metadata"].setdefault("labels", {})
    labels["conformance"] = run
    if group:
        labels["set"] = group
    return obj


def two_container_deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    labels = {"app": name}
    containers = [{"name": "app", "image": "registry.example/app:1"},
                  {"name": "side", "image": "registry.example/side:1"}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": containers}},
        },
    }


def setup_objects(ns: str, wns: str) -> list[tuple[str, str, dict[str, Any]]]:
    """``(namespace, resource, object)`` for everything the module creates in namespaces."""
    cms = [
        configmap("cm-a", labels={"app": "web", "tier": "frontend", "env": "prod",
                                  "version": "1"}),
        configmap("cm-b", labels={"app": "web", "tier": "backend", "env": "staging",
                                  "version": "2"}),
        configmap("cm-c", labels={"app": "db", "env": "prod", "version": "3"}),
        configmap("cm-d"),
        configmap("cm-e", {"k": "other"}, labels={"app": "web", "tier": "frontend",
                                                  "version": "10"}),
    ]
    out: list[tuple[str, str, dict[str, Any]]] = [(ns, "configmaps", c) for c in cms]
    out += [
        (ns, "pods", pod("pod-a", {"app": "web"}, node="node-1")),
        (ns, "pods", pod("pod-b", {"app": "web"})),
        (ns, "pods", pod("pod-c", {"app": "db"}, node="node-2")),
        (ns, "deployments", two_container_deployment("dep-a", replicas=2)),
        (ns, "services", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc-a"},
                          "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}}}),
        (ns, "secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec-a"},
                         "type": "Opaque", "data": {"k": "dg=="}}),
        (ns, "secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec-b"},
                         "type": "kubernetes.io/basic-auth",
                         "stringData": {"username": "u", "password": "p"}}),
    ]
    out += [(wns, "configmaps", configmap(name)) for name in WNS_CONFIGMAPS]
    out += [(wns, "configmaps", configmap(name, labels={"group": "delcoll"}))
            for name in WNS_DELETE_COLLECTION]
    out += [(wns, "deployments", two_container_deployment(name)) for name in WNS_DEPLOYMENTS]
    out += [(wns, "pods", pod(name)) for name in WNS_PODS]
    out += [(wns, "pods", pod(name, node="node-1")) for name in WNS_SCHEDULED_PODS]
    return out


async def context(target: Target, namespaces: tuple[str, str]) -> dict[str, str]:
    """The per-server template values (resourceVersions and uids as this server has them)."""
    host = target.base.split("://", 1)[1]
    ctx = {"host": host, "port": host.rsplit(":", 1)[1]}
    for namespace in namespaces:
        for gvr, _kind in KINDS.values():
            listed = await call(target, "GET", resource_path(gvr, namespace))
            for item in listed["items"]:
                key = item["metadata"]["name"].replace("-", "_")
                ctx[f"rv_{key}"] = item["metadata"]["resourceVersion"]
                ctx[f"uid_{key}"] = item["metadata"]["uid"]
    cms = await call(target, "GET", resource_path(KINDS["configmaps"][0], namespaces[0]))
    ctx["rv_cm"] = cms["metadata"]["resourceVersion"]
    prefix, dot, index = ctx["rv_cm"].rpartition(".")  # kubemirror's: <prefix>.<index>
    ctx["rv_future"] = f"{prefix}{dot}{int(index) + 10_000_000}"
    return ctx


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pair(real_env: EnvTest) -> AsyncIterator[Pair]:
    """The real server with the module's objects, and kubemirror's seeded with the same."""
    run = unique("run")
    ns, wns = unique("conf"), unique("confw")
    connector = new_connector(real_env.ssl_context(client_cert=True))
    async with aiohttp.ClientSession(connector=connector) as real_session, \
            aiohttp.ClientSession() as own_session:
        real = Target("kube-apiserver", real_session, real_env.url)
        namespaces = [labelled({"apiVersion": "v1", "kind": "Namespace",
                                "metadata": {"name": n}}, run) for n in (ns, wns)]
        for ns_obj in namespaces:
            await call(real, "POST", "/api/v1/namespaces", ns_obj, expect=201)
        node = f"node-{run}"
        await call(real, "POST", "/api/v1/nodes",
                   labelled({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}},
                            run), expect=201)
        for namespace, resource, obj in setup_objects(ns, wns):
            gvr = KINDS[resource][0]
            group = "ro" if namespace == ns else "rw"
            await call(real, "POST", resource_path(gvr, namespace), labelled(obj, run, group),
                       expect=201)
        await call(real, "PATCH", resource_path(KINDS["pods"][0], ns) + "/pod-c/status",
                   {"status": {"phase": "Running"}}, ctype="application/merge-patch+json")

        storage = new_storage()
        for namespace in (ns, wns):
            for gvr, kind in KINDS.values():
                listed = await call(real, "GET", resource_path(gvr, namespace))
                items = [{**item, "kind": kind, "apiVersion": gvr.api_version}
                         for item in listed["items"]]
                seed(storage, items, gvr=gvr)
        for path, gvr, kind in (
            ("/api/v1/namespaces", GroupVersionResource("", "v1", "namespaces"), "Namespace"),
            ("/api/v1/nodes", GroupVersionResource("", "v1", "nodes"), "Node"),
        ):
            listed = await call(real, "GET", path, params={"labelSelector": f"conformance={run}"})
            seed(storage, [{**i, "kind": kind, "apiVersion": "v1"} for i in listed["items"]],
                 gvr=gvr)

        async with KubeApiServer(storage) as server:
            own = Target("kubemirror", own_session, server.url)
            common = {"ns": ns, "wns": wns, "run": run, "node": node}
            for target in (real, own):
                target.ctx = {**common, **await context(target, (ns, wns))}
            yield Pair(real, own)


# -- sending a row ----------------------------------------------------------------------------


def fill(value: Any, ctx: Mapping[str, str]) -> Any:
    """``value`` with every string template filled (JSON bodies: recursively)."""
    if isinstance(value, str):
        return value.format_map(ctx)
    if isinstance(value, list):
        return [fill(v, ctx) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, ctx) for k, v in value.items()}
    return value


def is_watch(r: Req) -> bool:
    return "/watch/" in r.path or any(k == "watch" and v in ("true", "1") for k, v in r.query)


async def read_events(resp: aiohttp.ClientResponse, limit: int, into: list[Any]) -> None:
    """Append watch events to ``into`` until ``limit`` (0: until the stream ends)."""
    while limit == 0 or len(into) < limit:
        line = await resp.content.readline()
        if not line:
            return
        if line.strip():
            try:
                into.append(json.loads(line))
            except ValueError:
                into.append({"type": "<not JSON>"})


async def send(target: Target, r: Req, events: int = 0, during: tuple[Req, ...] = ()) -> Answer:
    ctx = dict(target.ctx)
    if r.before is not None:
        first = await send(target, r.before)
        meta = first.body.get("metadata", {}) if isinstance(first.body, dict) else {}
        ctx["continue"] = str(meta.get("continue", ""))
        ctx["list_rv"] = str(meta.get("resourceVersion", ""))
    headers = {k: v.format_map(ctx) for k, v in r.headers}
    if isinstance(r.body, bytes | str):
        data: bytes | None = r.body.encode() if isinstance(r.body, str) else r.body
    elif r.body is None:
        data = None
    else:
        data = json.dumps(fill(r.body, ctx)).encode()
    params = [(k, v.format_map(ctx)) for k, v in r.query]
    url = target.base + r.path.format_map(ctx)
    answer = Answer(0, "")
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            async with target.session.request(r.method, url, params=params, headers=headers,
                                              data=data) as resp:
                answer.status = resp.status
                answer.media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
                if is_watch(r) and resp.status == 200:
                    for step in during:
                        await send(target, step)
                    answer.events = []
                    await read_events(resp, events, answer.events)
                    return answer
                answer.raw = await resp.read()
    except TimeoutError:
        answer.timed_out = True
        return answer
    try:
        answer.body = json.loads(answer.raw) if answer.raw else None
    except ValueError:
        answer.body = None
    return answer


# -- what is compared -------------------------------------------------------------------------


def pluck(obj: Any, path: str) -> Any:
    """The value at dotted ``path`` (``*`` maps over a list); ``None`` when absent."""
    head, _, rest = path.partition(".")
    if head == "*":
        if not isinstance(obj, list):
            return None
        return [pluck(item, rest) if rest else item for item in obj]
    if not isinstance(obj, dict) or head not in obj:
        return None
    return pluck(obj[head], rest) if rest else obj[head]


def error_part(body: Mapping[str, Any], with_message: bool) -> dict[str, Any]:
    details = body.get("details") or {}
    out: dict[str, Any] = {
        "reason": body.get("reason"),
        "code": body.get("code"),
        "details": {k: details[k] for k in ("kind", "name", "group") if details.get(k)},
        "causes": sorted((c.get("field", ""), c.get("reason", ""))
                         for c in details.get("causes") or []),
    }
    if with_message:
        out["message"] = body.get("message")
    return out


def names(items: Any) -> list[Any]:
    return [pluck(i, "metadata.name") for i in items] if isinstance(items, list) else []


def event_summary(event: Any) -> list[Any]:
    kind, obj = event.get("type"), event.get("object") or {}
    if kind == "ERROR":
        return [kind, obj.get("code"), obj.get("reason")]
    if kind == "BOOKMARK":
        annotations = pluck(obj, "metadata.annotations") or {}
        return [kind, annotations.get(INITIAL_EVENTS_END)]
    return [kind, pluck(obj, "metadata.name")]


def discovery_resource(body: Any, name: str) -> Any:
    for entry in (body or {}).get("resources") or []:
        if entry.get("name") == name:
            return {
                "name": name,
                "singularName": entry.get("singularName"),
                "kind": entry.get("kind"),
                "namespaced": entry.get("namespaced"),
                "verbs": sorted(entry.get("verbs") or []),
                "shortNames": sorted(entry.get("shortNames") or []),
                "categories": sorted(entry.get("categories") or []),
            }
    return None


def discovery_group(body: Any, name: str) -> Any:
    for group in (body or {}).get("groups") or []:
        if group.get("name") == name:
            return {
                "versions": [v.get("groupVersion") for v in group.get("versions") or []],
                "preferredVersion": (group.get("preferredVersion") or {}).get("groupVersion"),
            }
    return None


def project(c: Case, answer: Answer, own: bool = False) -> dict[str, Any]:
    """The parts of ``answer`` that row ``c`` compares (``own``: kubemirror's answer)."""
    out: dict[str, Any] = {"status": answer.status}
    if answer.timed_out:
        out["timed_out"] = True
    body = answer.body if isinstance(answer.body, dict) else {}
    if body.get("kind") == "Status" and int(body.get("code") or 0) >= 400:
        out["error"] = error_part(body, c.msg)
    if "ctype" in c.compare:
        out["ctype"] = answer.media_type
    if answer.status >= 400:
        return out
    for aspect in c.compare:
        if aspect == "list":
            meta = body.get("metadata") or {}
            out["list"] = {
                "kind": body.get("kind"),
                "apiVersion": body.get("apiVersion"),
                "names": names(body.get("items")),
                "continue": bool(meta.get("continue")),
                "remainingItemCount": meta.get("remainingItemCount"),
            }
        elif aspect == "kind":
            out["kind"] = [body.get("kind"), body.get("apiVersion")]
        elif aspect == "fields":
            out["fields"] = {f: pluck(body, f) for f in c.fields}
        elif aspect == "table":
            columns = [col.get("name") for col in body.get("columnDefinitions") or []]
            if own and columns[-1:] == [OWN_TABLE_COLUMN]:  # DEVIATIONS
                columns.pop()
            out["table"] = {
                "kind": [body.get("kind"), body.get("apiVersion")],
                "columns": columns,
                "rows": [(r.get("cells") or [None])[0] for r in body.get("rows") or []],
                "continue": bool(pluck(body, "metadata.continue")),
            }
        elif aspect == "watch":
            out["watch"] = [event_summary(e) for e in answer.events or []]
        elif aspect == "resource":
            out["resource"] = discovery_resource(body, c.pick)
        elif aspect == "group":
            out["group"] = discovery_group(body, c.pick)
        elif aspect == "versions":
            out["versions"] = body.get("versions")
        elif aspect == "text":
            out["text"] = answer.raw.decode(errors="replace").strip()
        elif aspect != "ctype":
            raise AssertionError(f"unknown aspect {aspect!r} in {c.id}")
    return out


async def run_case(target: Target, c: Case, own: bool) -> dict[str, Any]:
    answer = await send(target, c.req, c.events, c.during)
    out = project(c, answer, own)
    if c.after is not None:
        after = Case(c.category, c.name, c.after, compare=("fields",), fields=c.after_fields)
        out["after"] = project(after, await send(target, c.after), own)
    return out


# -- the summary ------------------------------------------------------------------------------


@dataclass
class Outcome:
    category: str
    agree: bool
    real: dict[str, Any]
    own: dict[str, Any]
    intended: bool = False
    expected: str = ""  # kubemirror's intended answer (DEVIATIONS rows)


OUTCOMES: dict[str, Outcome] = {}


def short(value: Any, width: int = 150) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def differences(real: Mapping[str, Any], own: Mapping[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(real) | set(own)):
        if real.get(key) != own.get(key):
            out.append(f"{key}: real={short(real.get(key))} own={short(own.get(key))}")
    return out


def summary_lines() -> list[str]:
    categories: dict[str, list[Outcome]] = {}
    for outcome in OUTCOMES.values():
        categories.setdefault(outcome.category, []).append(outcome)
    lines = [f"{'category':<14}{'cases':>7}{'agree':>7}{'differ':>8}{'intended':>10}"]
    total = [0, 0, 0, 0]
    for category, outcomes in categories.items():
        counts = [len(outcomes), sum(o.agree and not o.intended for o in outcomes),
                  sum(not o.agree for o in outcomes), sum(o.intended for o in outcomes)]
        total = [a + b for a, b in zip(total, counts, strict=True)]
        lines.append(f"{category:<14}{counts[0]:>7}{counts[1]:>7}{counts[2]:>8}{counts[3]:>10}")
    lines.append(f"{'total':<14}{total[0]:>7}{total[1]:>7}{total[2]:>8}{total[3]:>10}")
    differing = [(cid, o) for cid, o in OUTCOMES.items() if not o.agree]
    if differing:
        lines.append("")
        lines.append("differences (real kube-apiserver vs kubemirror):")
    for cid, outcome in differing:
        lines.append(f"  {cid}")
        if outcome.intended:
            lines.append(f"      intended: {outcome.expected}; kubemirror: {short(outcome.own)}")
        else:
            lines.extend(f"      {d}" for d in differences(outcome.real, outcome.own))
    return lines


@pytest.fixture(scope="module", autouse=True)
def conformance_summary(pytestconfig: pytest.Config) -> Iterator[None]:
    """Print the summary table once the module's cases have run."""
    OUTCOMES.clear()
    yield
    if not OUTCOMES:
        return
    lines = summary_lines()
    path = os.environ.get(SUMMARY_ENV)
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line("")
        reporter.write_sep("=", "kube-apiserver conformance of kubemirror")
        for line in lines:
            reporter.write_line(line)


# -- the matrix -------------------------------------------------------------------------------


def params() -> list[Any]:
    out = []
    for c in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
        out.append(pytest.param(c, id=c.id, marks=marks))
    return out


@pytest.mark.parametrize("row", params())
async def test_conformance(row: Case, pair: Pair) -> None:
    real, own = await asyncio.gather(run_case(pair.real, row, False),
                                     run_case(pair.own, row, True))
    if row.own is None:
        agree = real == own
    else:
        error = own.get("error") or {}
        agree = own["status"] in row.own.statuses and bool(error) and (
            not row.own.reason or error.get("reason") == row.own.reason)
    expected = "" if row.own is None else f"{row.own.statuses} {row.own.reason} ({row.own.note})"
    OUTCOMES[row.id] = Outcome(row.category, agree, real, own, row.own is not None, expected)
    assert real["status"] == row.status, f"the real server answered {short(real, 400)}"
    if row.own is None:
        assert own == real, "\n".join(differences(real, own))
    else:
        assert agree, f"kubemirror should answer {row.own} ({row.own.note}), got {short(own)}"
