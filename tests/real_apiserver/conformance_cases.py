"""The request matrix of ``test_conformance``: one declarative row per HTTP request.

A ``Case`` is sent, as written, to the real kube-apiserver and to kubemirror's
``KubeApiServer`` (both hold the same objects, see ``test_conformance``); the parts
of the two answers named by the row are compared. Strings in paths, queries, headers
and bodies are templates (``str.format_map``) over the per-server context:

``{ns}``/``{wns}``      the read-only and the writable namespace of the module
``{run}``               the run id every setup object carries as label ``conformance``
``{node}``              the name of the module's Node (cluster-scoped)
``{host}``              ``127.0.0.1:<port>`` of the server being asked
``{rv_cm}``             the resourceVersion of the LIST of configmaps in ``{ns}``
``{rv_future}``         ``{rv_cm}``'s index plus ten million (a version not yet reached)
``{rv_<name>}``         the resourceVersion of setup object ``<name>`` (``-`` -> ``_``)
``{uid_<name>}``        its uid
``{continue}``          ``metadata.continue`` of the answer to ``Req.before``
``{list_rv}``           ``metadata.resourceVersion`` of the answer to ``Req.before``

A row that differs on kubemirror's server today carries its reason, one of the
``X_...`` constants below: as ``xfail=X_...`` on a line of its own, or as the last
column of a table row. It asserts the real behaviour and is a strict expected
failure, so the fix flips it to XPASS; then that ``xfail=`` line is deleted (or the
column set to ``""``). A row with ``own=Own(...)`` is an *intended* difference
(DEVIATIONS in ``test_conformance``): kubemirror's answer is checked against that
expectation instead of against the real one.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CASES",
    "WNS_CONFIGMAPS",
    "WNS_DELETE_COLLECTION",
    "WNS_DEPLOYMENTS",
    "WNS_PODS",
    "WNS_SCHEDULED_PODS",
    "Case",
    "Own",
    "Req",
]

JSON = "application/json"
MERGE = "application/merge-patch+json"
JSONPATCH = "application/json-patch+json"
SMP = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
KUBECTL_TABLE = (  # what kubectl get sends
    "application/json;as=Table;v=v1;g=meta.k8s.io,"
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)
PARTIAL_LIST = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

CM = "/api/v1/namespaces/{ns}/configmaps"
PODS = "/api/v1/namespaces/{ns}/pods"
WCM = "/api/v1/namespaces/{wns}/configmaps"
WPODS = "/api/v1/namespaces/{wns}/pods"
DEPLOY = "/apis/apps/v1/namespaces/{ns}/deployments"
WDEPLOY = "/apis/apps/v1/namespaces/{wns}/deployments"


@dataclass(frozen=True)
class Req:
    """One HTTP request (templates, see the module docstring)."""

    method: str = "GET"
    path: str = ""
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: Any = None  # dict/list: JSON; str/bytes: sent as is
    before: Req | None = None  # sent first: gives {continue} and {list_rv}


@dataclass(frozen=True)
class Own:
    """kubemirror's intended answer where it differs from the real one by design."""

    statuses: tuple[int, ...]
    reason: str = ""  # the Status reason it must give ("" : any Status)
    note: str = ""


@dataclass(frozen=True)
class Case:
    """One row of the matrix.

    ``compare`` names the parts compared besides the status code: ``list`` (kind,
    apiVersion, item names in order, continue present, remainingItemCount),
    ``kind``, ``fields`` (the dotted ``fields``; ``*`` maps over a list), ``table``
    (column names, first cells), ``watch`` (event types and names), ``resource``/
    ``group`` (discovery entry ``pick``), ``versions``, ``ctype`` (media type),
    ``text`` (the body). Error answers (a ``Status`` with code >= 400) always compare
    reason, code, details and causes; the message too unless ``msg=False``.
    ``status`` is the real server's code (checked first). ``events``: read that many
    watch events and hang up (0: read until the server ends the watch). ``during``:
    sent once the watch is open. ``after``: sent afterwards, compared on its status
    and ``after_fields``.
    """

    category: str
    name: str
    req: Req
    status: int = 200
    compare: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    pick: str = ""
    msg: bool = True
    events: int = 0
    during: tuple[Req, ...] = ()
    after: Req | None = None
    after_fields: tuple[str, ...] = ()
    own: Own | None = None
    xfail: str = ""

    @property
    def id(self) -> str:
        return f"{self.category}:{self.name}"


Query = Mapping[str, str] | tuple[tuple[str, str], ...]


def req(
    method: str,
    path: str,
    query: Query = (),
    headers: Mapping[str, str] | None = None,
    body: Any = None,
    ctype: str | None = None,
    before: Req | None = None,
) -> Req:
    hdrs = dict(headers or {})
    if ctype is not None:
        hdrs["Content-Type"] = ctype
    elif body is not None and not isinstance(body, (str, bytes)):
        hdrs["Content-Type"] = JSON
    pairs = tuple(query.items()) if isinstance(query, Mapping) else query
    return Req(method, path, pairs, tuple(hdrs.items()), body, before)


def case(category: str, name: str, method: str, path: str, query: Query = (), *,
         headers: Mapping[str, str] | None = None, body: Any = None, ctype: str | None = None,
         before: Req | None = None, **kw: Any) -> Case:
    return Case(category, name, req(method, path, query, headers, body, ctype, before), **kw)


def cm_body(name: str, labels: Mapping[str, str] | None = None,
            annotations: Mapping[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, **meta}
    if labels is not None:
        metadata["labels"] = dict(labels)
    if annotations is not None:
        metadata["annotations"] = dict(annotations)
    if not name:
        del metadata["name"]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {"k": "v"}}


# the objects the write cases act on, created in {wns} (one per case, so order never matters)
WNS_CONFIGMAPS = (
    "cm-jp", "cm-jp-test", "cm-jp-miss", "cm-jp-bad", "cm-mp", "cm-mp-text", "cm-mp-name",
    "cm-mp-label", "cm-smp", "cm-smp-stale", "cm-smp-empty", "cm-smp-json", "cm-apply",
    "cm-apply-fm", "cm-put", "cm-put-name", "cm-put-stale", "cm-put-text", "cm-dry-patch",
    "cm-dry-delete", "cm-dry-put", "cm-del", "cm-del-rv", "cm-del-rv-bad", "cm-del-uid",
    "cm-del-uid-bad", "cm-del-garbage", "cm-rv-bump",
)
WNS_DELETE_COLLECTION = ("cm-dc-1", "cm-dc-2")  # labelled group=delcoll
WNS_DEPLOYMENTS = ("dep-smp", "dep-mp", "dep-jp", "dep-mr", "dep-fg")  # two containers each
WNS_PODS = ("pod-st", "pod-st2", "pod-del-unsched")
WNS_SCHEDULED_PODS = ("pod-del-sched",)  # spec.nodeName=node-1

# -- why kubemirror differs today (a row's xfail=...; "" once fixed) ---------------------------

X_LABEL_MSG = "label selector errors: kubemirror's own message, not apimachinery's"
X_FIELD_MSG = "field selector syntax error: kubemirror's own message, not apimachinery's"
X_LIMIT_NEGATIVE = "limit=-1: real ignores it (full list), kubemirror 400"
X_RV0_LIMIT = "resourceVersion=0 with limit: real ignores limit (full list), kubemirror pages"
X_FOREIGN_RV = "resourceVersion=1 (not kubemirror's format): 400 instead of a watch"
X_LEGACY_WATCH_OBJECT = "/watch/.../<name> is answered like a GET, not as a watch stream"
X_TABLE_V1BETA1 = "Table v1beta1 asked for: kubemirror answers meta.k8s.io/v1"
X_PARTIAL_METADATA = "as=PartialObjectMetadataList ignored: the full ConfigMapList is sent"
X_DELETECOLLECTION_VERB = "discovery verbs lack deletecollection (DELETE on a collection: 405)"
X_CRD_DISCOVERY = X_DELETECOLLECTION_VERB + "; categories lack api-extensions"
X_RESOURCE_LIST_APIVERSION = "core APIResourceList: real has no apiVersion, kubemirror v1"
X_AGGREGATED = "aggregated discovery (apidiscovery.k8s.io/v2) not served: APIGroupList"
X_404_TEXT = "real answers a plain-text '404 page not found', kubemirror a NotFound Status"
X_404_MSG = "404 message: real 'the server could not find the requested resource' only"
X_OPENAPI_V3_CTYPE = "GET /openapi/v3: real Content-Type text/plain, kubemirror JSON"
X_JSONPATCH_TEST = "failed JSON patch test op: real 422 Invalid, kubemirror 400"
X_JSONPATCH_REPLACE = "JSON patch replace of a missing map key: real adds it, kubemirror 400"
X_APPLY_FIELD_MANAGER = "apply patch without fieldManager: real 422 (fieldManager required), 200"
X_SMP = "strategic merge patch applied as a merge patch: containers replaced, not merged"
X_NO_VALIDATION = "not validated (data keys, pod containers, selector): real 422, own 201"
X_DETAILS_NAME = "conflict details.name (and message) is '<namespace>/<name>', real '<name>'"
X_SCALE = "scale subresource not served"
X_NS_MISSING = "create in a missing namespace: real 404 namespaces not found, kubemirror 201"
X_DELETE_STATUS = "DELETE returns the object; real a Success Status for this kind"
X_GRACEFUL = "a scheduled pod is removed at once (real: graceful, deletionTimestamp set)"
X_FOREGROUND = "propagationPolicy=Foreground ignored: removed at once (real: finalizer)"
X_DELETECOLLECTION = "DELETE on a collection (deletecollection): 405"
X_ACCEPT_YAML = "Accept: application/yaml answered with JSON"
X_ACCEPT_PROTOBUF = "Accept: protobuf answered with JSON (neither protobuf nor 406)"
X_NOT_ACCEPTABLE = "Accept: text/html answered 200 JSON, real 406 NotAcceptable"
X_NAMESPACED_AT_ROOT = "GET /api/v1/configmaps/<name>: real generic 404 (no such route)"
X_WATCH_BOOL = "watch=maybe: real 200, kubemirror 400"

CASES: list[Case] = []
add = CASES.append

# -- label selectors: LIST configmaps of {ns} (cm-a..cm-e) ---------------------------------

LABEL_SELECTORS: list[tuple[str, str, int, str]] = [
    # (id, selector, real status, xfail reason)
    ("eq", "app=web", 200, ""),
    ("eqeq", "app==web", 200, ""),
    ("neq", "app!=web", 200, ""),
    ("in", "app in (web,db)", 200, ""),
    ("notin", "app notin (web)", 200, ""),
    ("exists", "app", 200, ""),
    ("not-exists", "!app", 200, ""),
    ("and", "app=web,tier=frontend", 200, ""),
    ("spaces-eq", "app = web", 200, ""),
    ("spaces-in", " app in ( web , db ) ", 200, ""),
    ("gt", "version>2", 200, ""),
    ("lt", "version<3", 200, ""),
    ("gt-and-eq", "version>0,app=web", 200, ""),
    ("notin-two", "tier notin (frontend,backend)", 200, ""),
    ("in-and-neq", "env in (prod),app!=db", 200, ""),
    ("empty-value", "app=", 200, ""),
    ("empty", "", 200, ""),
    ("no-match", "app=nope", 200, ""),
    ("exists-not-exists", "tier,!env", 200, ""),
    ("neq-empty", "app!=", 200, ""),
    ("prefixed-key", "example.com/app=web", 200, ""),
    ("in-empty", "app in ()", 200, ""),
    ("bad-double-eq", "app=web=x", 400, X_LABEL_MSG),
    ("bad-in-no-paren", "app in web", 400, X_LABEL_MSG),
    ("bad-gt-not-int", "version>x", 400, X_LABEL_MSG),
    ("bad-not-with-value", "!app=web", 400, X_LABEL_MSG),
    ("bad-space-in-key", "bad key=v", 400, X_LABEL_MSG),
    ("bad-double-comma", "app=web,,tier=x", 400, X_LABEL_MSG),
    ("bad-key-slashes", "a/b/c=v", 400, X_LABEL_MSG),
    ("bad-value-too-long", "app=" + "x" * 64, 400, X_LABEL_MSG),
    ("bad-key-dash", "-app=web", 400, X_LABEL_MSG),
    ("bad-notin-no-values", "app notin", 400, X_LABEL_MSG),
    ("bad-gte", "app>=1", 400, X_LABEL_MSG),
    ("bad-unclosed", "app in (web", 400, X_LABEL_MSG),
    ("bad-value-chars", "app=we$b", 400, X_LABEL_MSG),
]
for _id, _sel, _status, _why in LABEL_SELECTORS:
    add(case("labelsel", _id, "GET", CM, {"labelSelector": _sel}, status=_status,
             compare=("list",), xfail=_why))

# -- field selectors, per kind -------------------------------------------------------------

FIELD_SELECTORS: list[tuple[str, str, str, int, str]] = [
    # (id, path, selector, real status, xfail reason)
    ("cm-name", CM, "metadata.name=cm-a", 200, ""),
    ("cm-name-neq", CM, "metadata.name!=cm-a", 200, ""),
    ("cm-name-eqeq", CM, "metadata.name==cm-b", 200, ""),
    ("cm-namespace", CM, "metadata.namespace={ns}", 200, ""),
    ("cm-namespace-other", CM, "metadata.namespace=other", 200, ""),
    ("cm-unsupported-data", CM, "data.k=v", 400, ""),
    ("cm-unsupported-nodename", CM, "spec.nodeName=node-1", 400, ""),
    ("cm-unsupported-label", CM, "metadata.labels.app=web", 400, ""),
    ("cm-bad-syntax", CM, "metadata.name", 400, X_FIELD_MSG),
    ("cm-bad-in", CM, "metadata.name in (cm-a)", 400, X_FIELD_MSG),
    ("pod-node", PODS, "spec.nodeName=node-1", 200, ""),
    ("pod-node-empty", PODS, "spec.nodeName=", 200, ""),
    ("pod-node-neq-empty", PODS, "spec.nodeName!=", 200, ""),
    ("pod-phase-pending", PODS, "status.phase=Pending", 200, ""),
    ("pod-phase-running", PODS, "status.phase=Running", 200, ""),
    ("pod-phase-neq", PODS, "status.phase!=Pending", 200, ""),
    ("pod-name-and-node", PODS, "metadata.name=pod-a,spec.nodeName=node-1", 200, ""),
    ("pod-restart-policy", PODS, "spec.restartPolicy=Always", 200, ""),
    ("pod-scheduler", PODS, "spec.schedulerName=default-scheduler", 200, ""),
    ("pod-service-account", PODS, "spec.serviceAccountName=default", 200, ""),
    ("pod-pod-ip", PODS, "status.podIP=", 200, ""),
    ("pod-unsupported-label", PODS, "metadata.labels.app=web", 400, ""),
    ("pod-unsupported-image", PODS, "spec.containers.image=x", 400, ""),
    ("secret-type", "/api/v1/namespaces/{ns}/secrets", "type=Opaque", 200, ""),
    ("secret-type-basic", "/api/v1/namespaces/{ns}/secrets", "type=kubernetes.io/basic-auth",
     200, ""),
    ("secret-unsupported", "/api/v1/namespaces/{ns}/secrets", "data.password=x", 400,
     ""),
    ("ns-name", "/api/v1/namespaces", "metadata.name={ns}", 200, ""),
    ("ns-phase", "/api/v1/namespaces", "status.phase=Active,metadata.name={wns}", 200, ""),
    ("deploy-name", DEPLOY, "metadata.name=dep-a", 200, ""),
    ("deploy-unsupported-replicas", DEPLOY, "spec.replicas=2", 400, ""),
    ("svc-name", "/api/v1/namespaces/{ns}/services", "metadata.name=svc-a", 200, ""),
    ("node-unschedulable", "/api/v1/nodes", "spec.unschedulable=false,metadata.name={node}", 200,
     ""),
    ("all-ns-cm-namespace", "/api/v1/configmaps", "metadata.namespace={ns}", 200, ""),
]
for _id, _path, _sel, _status, _why in FIELD_SELECTORS:
    add(case("fieldsel", _id, "GET", _path, {"fieldSelector": _sel}, status=_status,
             compare=("list",), xfail=_why))

# -- pagination ----------------------------------------------------------------------------

for _limit, _why in ((1, ""), (2, ""), (3, ""), (4, ""), (5, ""), (6, ""), (10, ""), (0, "")):
    add(case("paging", f"limit-{_limit}", "GET", CM, {"limit": str(_limit)}, compare=("list",),
             xfail=_why))


def page(limit: int, *, before: Req | None = None, path: str = CM, **query: str) -> Req:
    q = {"limit": str(limit), **query}
    if before is not None:
        q["continue"] = "{continue}"
    return req("GET", path, q, before=before)


_P1 = page(2)
_P2 = page(2, before=_P1)
add(Case("paging", "limit-2-page-2", _P2, compare=("list",)))
add(Case("paging", "limit-2-page-3", page(2, before=_P2), compare=("list",)))
add(Case("paging", "limit-2-continue-other-limit", page(10, before=_P1), compare=("list",)))
_SEL = page(1, labelSelector="app=web")
add(Case("paging", "selector-limit-1", _SEL, compare=("list",)))
add(Case("paging", "selector-limit-1-page-2",
         page(1, before=_SEL, labelSelector="app=web"), compare=("list",)))
add(Case("paging", "continue-with-resource-version",
         page(2, before=_P1, resourceVersion="{rv_cm}"), status=400))
_BOUND = Own((400,), "BadRequest", "a continue token is bound to the request that issued it")
add(Case("paging", "continue-scope-other-resource",
         page(5, before=_P1, path=PODS), compare=("list",), own=_BOUND))
add(Case("paging", "continue-scope-other-namespace",
         page(5, before=_P1, path="/api/v1/namespaces/missing-{run}/configmaps"),
         compare=("list",), own=_BOUND))
add(case("paging", "continue-garbage", "GET", CM, {"limit": "2", "continue": "garbage"},
         status=400, msg=False))
_FORGED = base64.urlsafe_b64encode(
    json.dumps({"v": "meta.k8s.io/v0", "rv": 5, "start": "cm-b\x00"}).encode()).decode()
add(case("paging", "continue-wrong-version", "GET", CM, {"limit": "2", "continue": _FORGED},
         status=400, msg=False))
add(case("paging", "limit-negative", "GET", CM, {"limit": "-1"}, compare=("list",),
         xfail=X_LIMIT_NEGATIVE))
add(case("paging", "limit-not-a-number", "GET", CM, {"limit": "abc"}, status=400, msg=False))
add(case("paging", "pods-node-limit-1", "GET", PODS,
         {"limit": "1", "fieldSelector": "spec.nodeName!="}, compare=("list",)))
add(case("paging", "namespaces-limit-1", "GET", "/api/v1/namespaces",
         {"limit": "1", "labelSelector": "conformance={run}"}, compare=("list",)))
add(case("paging", "all-namespaces-limit-3", "GET", "/api/v1/configmaps",
         {"limit": "3", "labelSelector": "conformance={run},set=ro"}, compare=("list",)))

# -- resourceVersion / resourceVersionMatch on LIST ----------------------------------------

RV_CASES: list[tuple[str, dict[str, str], int, bool, str]] = [
    # (id, query, real status, compare the message, xfail reason)
    ("rv-0", {"resourceVersion": "0"}, 200, True, ""),
    ("rv-0-not-older", {"resourceVersion": "0", "resourceVersionMatch": "NotOlderThan"}, 200,
     True, ""),
    ("rv-setup-time", {"resourceVersion": "{rv_cm}"}, 200, True, ""),
    ("rv-current", {"resourceVersion": "{list_rv}"}, 200, True, ""),
    ("rv-current-exact", {"resourceVersion": "{list_rv}", "resourceVersionMatch": "Exact"}, 200,
     True, ""),
    ("rv-current-not-older", {"resourceVersion": "{list_rv}",
                              "resourceVersionMatch": "NotOlderThan"}, 200, True, ""),
    ("rv-exact-limit-2", {"resourceVersion": "{list_rv}", "resourceVersionMatch": "Exact",
                          "limit": "2"}, 200, True, ""),
    ("rv-future-not-older", {"resourceVersion": "{rv_future}",
                             "resourceVersionMatch": "NotOlderThan"}, 504, False, ""),
    ("rv-0-limit-2", {"resourceVersion": "0", "limit": "2"}, 200, True, X_RV0_LIMIT),
    ("match-without-rv", {"resourceVersionMatch": "NotOlderThan"}, 422, True, ""),
    ("match-exact-rv-0", {"resourceVersion": "0", "resourceVersionMatch": "Exact"}, 422, True,
     ""),
    ("match-bogus", {"resourceVersion": "1", "resourceVersionMatch": "Bogus"}, 422, True,
     ""),
    ("rv-garbage", {"resourceVersion": "abc"}, 400, False, ""),
    ("list-send-initial-events", {"sendInitialEvents": "true"}, 422, True, ""),
    ("list-watch-bookmarks", {"allowWatchBookmarks": "true"}, 200, True, ""),
]
_LIST = req("GET", CM)  # {list_rv}: the current version of the configmaps of {ns}
for _id, _q, _status, _msg, _why in RV_CASES:
    add(case("rv", _id, "GET", CM, _q, status=_status, msg=_msg, compare=("list",),
             before=_LIST if "{list_rv}" in _q.values() else None, xfail=_why))
add(case("rv", "rv-past-exact", "GET", CM, {"resourceVersion": "{rv_cm}",
                                            "resourceVersionMatch": "Exact"},
         before=req("PATCH", WCM + "/cm-rv-bump", body={"data": {"k": "bumped"}}, ctype=MERGE),
         compare=("list",)))

# -- watch ---------------------------------------------------------------------------------

WATCH_CASES: list[tuple[str, str, dict[str, str], int, str]] = [
    # (id, path, query, events to read (0: until timeoutSeconds ends it), xfail reason)
    ("rv-0", CM, {"resourceVersion": "0", "timeoutSeconds": "1"}, 0, ""),
    ("from-list-rv", CM, {"resourceVersion": "{list_rv}", "timeoutSeconds": "1"}, 0, ""),
    ("label-selector", CM, {"resourceVersion": "0", "labelSelector": "app=web"}, 3, ""),
    ("field-selector", CM, {"resourceVersion": "0", "fieldSelector": "metadata.name=cm-c"}, 1,
     ""),
    ("pods-node", PODS, {"resourceVersion": "0", "fieldSelector": "spec.nodeName=node-1"}, 1,
     ""),
    ("initial-events", CM, {"sendInitialEvents": "true", "allowWatchBookmarks": "true",
                            "resourceVersionMatch": "NotOlderThan"}, 6, ""),
    ("rv-1", CM, {"resourceVersion": "1", "timeoutSeconds": "1"}, 0, X_FOREIGN_RV),
]
for _id, _path, _q, _n, _why in WATCH_CASES:
    add(case("watch", _id, "GET", _path, {"watch": "true", **_q}, compare=("watch",),
             events=_n, before=_LIST if "{list_rv}" in _q.values() else None, xfail=_why))
add(case("watch", "legacy-path", "GET", "/api/v1/watch/namespaces/{ns}/configmaps",
         {"resourceVersion": "0"}, compare=("watch",), events=5))
add(case("watch", "legacy-path-object", "GET", "/api/v1/watch/namespaces/{ns}/configmaps/cm-b",
         {"resourceVersion": "0"}, compare=("watch",), events=1,
         xfail=X_LEGACY_WATCH_OBJECT))
add(case("watch", "bad-label-selector", "GET", CM, {"watch": "true", "labelSelector": "a in b"},
         status=400,
         xfail=X_LABEL_MSG))
add(case("watch", "initial-events-without-match", "GET", CM,
         {"watch": "true", "sendInitialEvents": "true"}, status=422))
add(case("watch", "exact-match", "GET", CM,
         {"watch": "true", "resourceVersion": "{rv_cm}", "resourceVersionMatch": "Exact"},
         status=422))
add(case("watch", "writes", "GET", WCM, {"watch": "true", "fieldSelector":
                                         "metadata.name=cm-watch"},
         compare=("watch",), events=3,
         during=(req("POST", WCM, body=cm_body("cm-watch")),
                 req("PATCH", WCM + "/cm-watch", body={"data": {"k": "w"}}, ctype=MERGE),
                 req("DELETE", WCM + "/cm-watch"))))

# -- Table output --------------------------------------------------------------------------

TABLES: list[tuple[str, str, dict[str, str], str, str]] = [
    # (id, path, query, Accept, xfail reason)
    ("configmaps", CM, {}, TABLE, ""),
    ("configmap", CM + "/cm-a", {}, TABLE, ""),
    ("pods", PODS, {}, TABLE, ""),
    ("deployments", DEPLOY, {}, TABLE, ""),
    ("services", "/api/v1/namespaces/{ns}/services", {}, TABLE, ""),
    ("secrets", "/api/v1/namespaces/{ns}/secrets", {}, TABLE, ""),
    ("namespaces", "/api/v1/namespaces", {"labelSelector": "conformance={run}"}, TABLE, ""),
    ("nodes", "/api/v1/nodes", {"fieldSelector": "metadata.name={node}"}, TABLE, ""),
    ("limit-2", CM, {"limit": "2"}, TABLE, ""),
    ("selector", CM, {"labelSelector": "app=db"}, TABLE, ""),
    ("kubectl-accept", PODS, {}, KUBECTL_TABLE, ""),
    ("include-object", CM, {"includeObject": "Object"}, TABLE, ""),
    ("include-none", CM, {"includeObject": "None"}, TABLE, ""),
    ("v1beta1", CM, {}, "application/json;as=Table;v=v1beta1;g=meta.k8s.io", X_TABLE_V1BETA1),
]
for _id, _path, _q, _accept, _why in TABLES:
    add(case("table", _id, "GET", _path, _q, headers={"Accept": _accept},
             compare=("table", "ctype"), xfail=_why))
add(case("table", "include-object-kind", "GET", CM, {"includeObject": "Object"},
         headers={"Accept": TABLE}, compare=("fields",), fields=("rows.*.object.kind",)))
add(case("table", "metadata-object-kind", "GET", CM, {}, headers={"Accept": TABLE},
         compare=("fields",), fields=("rows.*.object.kind", "rows.*.object.metadata.name")))
add(case("table", "partial-object-metadata-list", "GET", CM, {},
         headers={"Accept": PARTIAL_LIST}, compare=("list", "ctype"),
         xfail=X_PARTIAL_METADATA))

# -- discovery -----------------------------------------------------------------------------

add(case("discovery", "api", "GET", "/api", compare=("versions", "kind")))
DISCOVERY_RESOURCES: list[tuple[str, str, str]] = [
    # (group/version path, resource, xfail reason)
    ("/api/v1", "pods", X_DELETECOLLECTION_VERB),
    ("/api/v1", "services", X_DELETECOLLECTION_VERB),
    ("/api/v1", "endpoints", X_DELETECOLLECTION_VERB),
    ("/api/v1", "configmaps", X_DELETECOLLECTION_VERB),
    ("/api/v1", "secrets", X_DELETECOLLECTION_VERB),
    ("/api/v1", "namespaces", ""),
    ("/api/v1", "nodes", X_DELETECOLLECTION_VERB),
    ("/api/v1", "events", X_DELETECOLLECTION_VERB),
    ("/api/v1", "replicationcontrollers", X_DELETECOLLECTION_VERB),
    ("/apis/apps/v1", "deployments", X_DELETECOLLECTION_VERB),
    ("/apis/apps/v1", "replicasets", X_DELETECOLLECTION_VERB),
    ("/apis/apps/v1", "statefulsets", X_DELETECOLLECTION_VERB),
    ("/apis/apps/v1", "daemonsets", X_DELETECOLLECTION_VERB),
    ("/apis/networking.k8s.io/v1", "ingresses", X_DELETECOLLECTION_VERB),
    ("/apis/coordination.k8s.io/v1", "leases", X_DELETECOLLECTION_VERB),
    ("/apis/apiextensions.k8s.io/v1", "customresourcedefinitions", X_CRD_DISCOVERY),
]
for _gv, _res, _why in DISCOVERY_RESOURCES:
    add(case("discovery", f"{_gv.strip('/').replace('/', '-')}-{_res}", "GET", _gv,
             compare=("resource",),
             pick=_res, xfail=_why))
for _group, _why in (("apps", ""), ("networking.k8s.io", ""), ("coordination.k8s.io", ""),
                     ("apiextensions.k8s.io", "")):
    add(case("discovery", f"apis-group-{_group}", "GET", "/apis", compare=("group",),
             pick=_group, xfail=_why))
add(case("discovery", "apis-kind", "GET", "/apis", compare=("kind", "ctype")))
add(case("discovery", "api-v1-kind", "GET", "/api/v1", compare=("kind", "fields"),
         fields=("groupVersion",),
         xfail=X_RESOURCE_LIST_APIVERSION))
add(case("discovery", "group-apps", "GET", "/apis/apps", compare=("kind", "fields"),
         fields=("name", "versions", "preferredVersion")))
add(case("discovery", "aggregated-apis", "GET", "/apis", headers={"Accept": AGGREGATED},
         compare=("kind", "ctype"),
         xfail=X_AGGREGATED))
add(case("discovery", "unknown-group", "GET", "/apis/nope.example.com", status=404,
         xfail=X_404_TEXT))
add(case("discovery", "unknown-group-version", "GET", "/apis/apps/v2", status=404,
         xfail=X_404_MSG))
add(case("discovery", "unknown-core-version", "GET", "/api/v2", status=404,
         xfail=X_404_MSG))
add(case("discovery", "version", "GET", "/version", compare=("fields",), fields=("major",)))
for _probe in ("healthz", "readyz", "livez"):
    add(case("discovery", _probe, "GET", f"/{_probe}", compare=("text",)))

# -- OpenAPI -------------------------------------------------------------------------------

OPENAPI: list[tuple[str, str, int, str]] = [
    ("v2", "/openapi/v2", 200, ""),
    ("v3", "/openapi/v3", 200, X_OPENAPI_V3_CTYPE),
    ("v3-core", "/openapi/v3/api/v1", 200, ""),
    ("v3-apps", "/openapi/v3/apis/apps/v1", 200, ""),
    ("v3-unknown", "/openapi/v3/apis/nope.example.com/v1", 404, X_404_TEXT),
]
for _id, _path, _status, _why in OPENAPI:
    add(case("openapi", _id, "GET", _path, status=_status, compare=("ctype",), msg=False,
             xfail=_why))

# -- patches -------------------------------------------------------------------------------

add(case("patch", "cm-json-patch", "PATCH", WCM + "/cm-jp",
         body=[{"op": "add", "path": "/data/x", "value": "1"},
               {"op": "remove", "path": "/data/k"}], ctype=JSONPATCH,
         compare=("fields",), fields=("data",)))
add(case("patch", "cm-json-patch-test-fails", "PATCH", WCM + "/cm-jp-test",
         body=[{"op": "test", "path": "/data/k", "value": "nope"}], ctype=JSONPATCH,
         status=422, msg=False,
         xfail=X_JSONPATCH_TEST))
add(case("patch", "cm-json-patch-missing-path", "PATCH", WCM + "/cm-jp-miss",
         body=[{"op": "replace", "path": "/data/missing", "value": "1"}], ctype=JSONPATCH,
         compare=("fields",), fields=("data",),
         xfail=X_JSONPATCH_REPLACE))
add(case("patch", "cm-json-patch-not-a-list", "PATCH", WCM + "/cm-jp-bad",
         body={"op": "add"}, ctype=JSONPATCH, status=400, msg=False))
add(case("patch", "cm-merge-patch", "PATCH", WCM + "/cm-mp",
         body={"data": {"x": "1", "k": None}, "metadata": {"labels": {"m": "1"}}}, ctype=MERGE,
         compare=("fields",), fields=("data", "metadata.labels")))
add(case("patch", "cm-strategic-merge-patch", "PATCH", WCM + "/cm-smp",
         body={"data": {"x": "1"}}, ctype=SMP, compare=("fields",), fields=("data",)))
add(case("patch", "deploy-strategic-merge-containers", "PATCH", WDEPLOY + "/dep-smp",
         body={"spec": {"template": {"spec": {"containers": [
             {"name": "app", "image": "registry.example/app:2"}]}}}}, ctype=SMP,
         compare=("fields",), fields=("spec.template.spec.containers.*.name",
                                      "spec.template.spec.containers.*.image"),
         xfail=X_SMP))
add(case("patch", "deploy-merge-replaces-containers", "PATCH", WDEPLOY + "/dep-mp",
         body={"spec": {"template": {"spec": {"containers": [
             {"name": "app", "image": "registry.example/app:2"}]}}}}, ctype=MERGE,
         compare=("fields",), fields=("spec.template.spec.containers.*.name",
                                      "spec.template.spec.containers.*.image")))
add(case("patch", "deploy-merge-replicas", "PATCH", WDEPLOY + "/dep-mr",
         body={"spec": {"replicas": 3}}, ctype=MERGE, compare=("fields",),
         fields=("spec.replicas", "metadata.generation")))
add(case("patch", "deploy-json-patch-replicas", "PATCH", WDEPLOY + "/dep-jp",
         body=[{"op": "replace", "path": "/spec/replicas", "value": 4}], ctype=JSONPATCH,
         compare=("fields",), fields=("spec.replicas",)))
add(case("patch", "apply-no-field-manager", "PATCH", WCM + "/cm-apply",
         body="data:\n  k: applied\n", ctype=APPLY, status=422,
         xfail=X_APPLY_FIELD_MANAGER))
add(case("patch", "apply-with-field-manager", "PATCH", WCM + "/cm-apply-fm",
         {"fieldManager": "t", "force": "true"},
         body="apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-apply-fm\ndata:\n  k: a\n",
         ctype=APPLY, compare=("fields",), fields=("metadata.name", "data")))
add(case("patch", "text-plain", "PATCH", WCM + "/cm-mp-text", body='{"data":{"y":"1"}}',
         ctype="text/plain", status=415))
add(case("patch", "change-name", "PATCH", WCM + "/cm-mp-name",
         body={"metadata": {"name": "other"}}, ctype=MERGE, status=400, msg=False))
add(case("patch", "invalid-label", "PATCH", WCM + "/cm-mp-label",
         body={"metadata": {"labels": {"bad key": "v"}}}, ctype=MERGE, status=422))
add(case("patch", "not-found", "PATCH", WCM + "/nope", body={"data": {"a": "b"}}, ctype=MERGE,
         status=404))
add(case("patch", "stale-resource-version", "PATCH", WCM + "/cm-smp-stale",
         body={"metadata": {"resourceVersion": "1"}, "data": {"z": "1"}}, ctype=MERGE,
         status=409,
         xfail=X_DETAILS_NAME))
add(case("patch", "empty-merge-patch", "PATCH", WCM + "/cm-smp-empty", body={}, ctype=MERGE,
         compare=("fields",), fields=("metadata.name",)))
add(case("patch", "invalid-json", "PATCH", WCM + "/cm-smp-json", body="{nope", ctype=MERGE,
         status=400, msg=False))

# -- subresources --------------------------------------------------------------------------

add(case("subresource", "pod-status-get", "GET", PODS + "/pod-c/status", compare=("fields",),
         fields=("kind", "metadata.name", "status.phase")))
add(case("subresource", "deploy-status-get", "GET", DEPLOY + "/dep-a/status",
         compare=("fields",), fields=("kind", "metadata.name")))
add(case("subresource", "pod-status-patch", "PATCH", WPODS + "/pod-st/status",
         body={"status": {"phase": "Running"}, "spec": {"activeDeadlineSeconds": 5}},
         ctype=MERGE, compare=("fields",), fields=("status.phase", "spec.activeDeadlineSeconds"),
         after=req("GET", WPODS + "/pod-st"),
         after_fields=("status.phase", "spec.activeDeadlineSeconds")))
add(case("subresource", "pod-main-patch-ignores-status", "PATCH", WPODS + "/pod-st2",
         body={"status": {"phase": "Failed"}, "metadata": {"labels": {"x": "y"}}},
         ctype=MERGE, compare=("fields",), fields=("status.phase", "metadata.labels.x")))
add(case("subresource", "deploy-scale-get", "GET", DEPLOY + "/dep-a/scale", compare=("fields",),
         fields=("kind", "apiVersion", "spec.replicas"),
         xfail=X_SCALE))
add(case("subresource", "configmap-status-get", "GET", CM + "/cm-a/status", status=404))
add(case("subresource", "pod-unknown-subresource", "GET", PODS + "/pod-a/bogus", status=404))
add(case("subresource", "pod-status-not-found", "GET", PODS + "/nope/status", status=404))

# -- validation (POST into {wns}) -----------------------------------------------------------

VALIDATION: list[tuple[str, str, Any, int, bool, str]] = [
    # (id, path, body, real status, compare the message, xfail reason)
    ("cm-bad-name", WCM, cm_body("Bad_Name"), 422, True, ""),
    ("cm-name-too-long", WCM, cm_body("a" * 254), 422, True, ""),
    ("cm-no-name", WCM, cm_body(""), 422, True, ""),
    ("cm-bad-label-key", WCM, cm_body("v-lk", labels={"bad key": "v"}), 422, True, ""),
    ("cm-bad-label-value", WCM, cm_body("v-lv", labels={"k": "-x"}), 422, True, ""),
    ("cm-label-value-too-long", WCM, cm_body("v-ll", labels={"k": "x" * 64}), 422, True,
     ""),
    ("cm-bad-annotation-key", WCM, cm_body("v-ak", annotations={"bad key": "v"}), 422, True,
     ""),
    ("cm-bad-data-key", WCM, {**cm_body("v-dk"), "data": {"bad key": "v"}}, 422, True,
     X_NO_VALIDATION),
    ("pod-bad-name", WPODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Pod_1"},
                             "spec": {"containers": [{"name": "a", "image": "i"}]}}, 422, True,
     ""),
    ("pod-no-containers", WPODS, {"apiVersion": "v1", "kind": "Pod",
                                  "metadata": {"name": "v-pod"}, "spec": {}}, 422, True,
                                   X_NO_VALIDATION),
    ("ns-bad-name", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                           "metadata": {"name": "Bad.NS"}}, 422, True,
                                            ""),
    ("deploy-selector-mismatch", WDEPLOY, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "v-dep"},
        "spec": {"selector": {"matchLabels": {"a": "1"}}, "template": {
            "metadata": {"labels": {"a": "2"}},
            "spec": {"containers": [{"name": "a", "image": "i"}]}}}}, 422, True, X_NO_VALIDATION),
    ("kind-mismatch", WCM, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "v-km"}},
     400, True, ""),
    ("namespace-mismatch", WCM, cm_body("v-nm", namespace="other"), 400, True, ""),
    ("already-exists", WCM, cm_body("cm-jp"), 409, True, X_DETAILS_NAME),
    ("namespace-not-found", "/api/v1/namespaces/nope-{run}/configmaps", cm_body("v-nf"), 404,
     True, X_NS_MISSING),
    ("invalid-json", WCM, "{nope", 400, False, ""),
    ("empty-body", WCM, b"", 400, False, ""),
    ("body-not-object", WCM, [1, 2], 400, False, ""),
]
for _id, _path, _body, _status, _msg, _why in VALIDATION:
    add(case("validation", _id, "POST", _path, body=_body,
             ctype=JSON if isinstance(_body, (str, bytes)) else None,
             status=_status, msg=_msg, xfail=_why))
add(case("validation", "generate-name", "POST", WCM, body=cm_body("", generateName="gen-"),
         status=201, compare=("fields",), fields=("metadata.generateName", "metadata.namespace")))
add(case("validation", "yaml-body", "POST", WCM,
         body="apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: v-yaml\ndata:\n  k: v\n",
         ctype="application/yaml", status=201, compare=("fields",), fields=("data",)))
add(case("validation", "put-name-mismatch", "PUT", WCM + "/cm-put-name", body=cm_body("other"),
         status=400))
add(case("validation", "put-stale-rv", "PUT", WCM + "/cm-put-stale",
         body=cm_body("cm-put-stale", resourceVersion="1"), status=409,
         xfail=X_DETAILS_NAME))
add(case("validation", "put-no-rv", "PUT", WCM + "/cm-put", body=cm_body("cm-put"),
         compare=("fields",), fields=("metadata.name", "data")))
add(case("validation", "put-not-found", "PUT", WCM + "/nope", body=cm_body("nope"),
         status=404))

# -- dryRun ----------------------------------------------------------------------------------

add(case("dryrun", "create", "POST", WCM, {"dryRun": "All"}, body=cm_body("dry-create"),
         status=201, compare=("fields",), fields=("metadata.name",),
         after=req("GET", WCM + "/dry-create")))
add(case("dryrun", "create-invalid", "POST", WCM, {"dryRun": "All"}, body=cm_body("Bad_Dry"),
         status=422))
add(case("dryrun", "patch", "PATCH", WCM + "/cm-dry-patch", {"dryRun": "All"},
         body={"data": {"k": "dry"}}, ctype=MERGE, compare=("fields",), fields=("data",),
         after=req("GET", WCM + "/cm-dry-patch"), after_fields=("data",)))
add(case("dryrun", "delete", "DELETE", WCM + "/cm-dry-delete", {"dryRun": "All"},
         compare=("kind",), after=req("GET", WCM + "/cm-dry-delete"), after_fields=("data",),
         xfail=X_DELETE_STATUS))
add(case("dryrun", "put", "PUT", WCM + "/cm-dry-put", {"dryRun": "All"},
         body={**cm_body("cm-dry-put"), "data": {"k": "put"}}, compare=("fields",),
         fields=("data",), after=req("GET", WCM + "/cm-dry-put"), after_fields=("data",)))
add(case("dryrun", "bad-value", "POST", WCM, {"dryRun": "Some"}, body=cm_body("dry-bad"),
         status=422))

# -- DELETE and DeleteOptions ----------------------------------------------------------------

add(case("delete", "configmap", "DELETE", WCM + "/cm-del", compare=("kind", "fields"),
         fields=("status", "details.name", "details.kind"),
         after=req("GET", WCM + "/cm-del"),
         xfail=X_DELETE_STATUS))
add(case("delete", "not-found", "DELETE", WCM + "/nope", status=404))
add(case("delete", "precondition-rv-ok", "DELETE", WCM + "/cm-del-rv",
         body={"kind": "DeleteOptions", "apiVersion": "v1",
               "preconditions": {"resourceVersion": "{rv_cm_del_rv}"}},
         after=req("GET", WCM + "/cm-del-rv")))
add(case("delete", "precondition-rv-stale", "DELETE", WCM + "/cm-del-rv-bad",
         body={"preconditions": {"resourceVersion": "1"}}, status=409, msg=False))
add(case("delete", "precondition-uid-wrong", "DELETE", WCM + "/cm-del-uid-bad",
         body={"preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}}, status=409,
         msg=False))
add(case("delete", "precondition-uid-ok", "DELETE", WCM + "/cm-del-uid",
         body={"preconditions": {"uid": "{uid_cm_del_uid}"}},
         after=req("GET", WCM + "/cm-del-uid")))
add(case("delete", "options-garbage", "DELETE", WCM + "/cm-del-garbage", body="{nope",
         ctype=JSON, status=400, msg=False))
add(case("delete", "pod-unscheduled", "DELETE", WPODS + "/pod-del-unsched",
         compare=("kind",), after=req("GET", WPODS + "/pod-del-unsched")))
add(case("delete", "pod-scheduled-graceful", "DELETE", WPODS + "/pod-del-sched",
         compare=("kind",), fields=("metadata.deletionGracePeriodSeconds",),
         after=req("GET", WPODS + "/pod-del-sched"),
         xfail=X_GRACEFUL))
add(case("delete", "deploy-foreground", "DELETE", WDEPLOY + "/dep-fg",
         {"propagationPolicy": "Foreground"}, compare=("kind", "fields"),
         fields=("metadata.finalizers",), after=req("GET", WDEPLOY + "/dep-fg"),
         after_fields=("metadata.finalizers",),
         xfail=X_FOREGROUND))
add(case("delete", "collection", "DELETE", WCM, {"labelSelector": "group=delcoll"},
         compare=("list",), after=req("GET", WCM + "/cm-dc-1"),
         xfail=X_DELETECOLLECTION))

# -- content types ---------------------------------------------------------------------------

_JSON_ONLY = Own((415,), "UnsupportedMediaType", "bodies are JSON or YAML (no protobuf)")
add(case("ctype", "post-text-plain", "POST", WCM, body='{"metadata":{"name":"ct-1"}}',
         ctype="text/plain", status=415, own=_JSON_ONLY))
add(case("ctype", "put-text-plain", "PUT", WCM + "/cm-put-text", body="x", ctype="text/plain",
         status=415, own=_JSON_ONLY))
add(case("ctype", "post-protobuf-garbage", "POST", WCM, body=b"\x00\x01",
         ctype="application/vnd.kubernetes.protobuf", status=400, msg=False, own=_JSON_ONLY))
add(case("ctype", "post-json-charset", "POST", WCM, body=json.dumps(cm_body("ct-charset")),
         ctype="application/json; charset=utf-8", status=201, compare=("fields",),
         fields=("metadata.name",)))
add(case("ctype", "accept-yaml", "GET", CM + "/cm-a", headers={"Accept": "application/yaml"},
         compare=("ctype",),
         xfail=X_ACCEPT_YAML))
add(case("ctype", "accept-protobuf", "GET", CM + "/cm-a",
         headers={"Accept": "application/vnd.kubernetes.protobuf"}, compare=("ctype",),
         xfail=X_ACCEPT_PROTOBUF))
add(case("ctype", "accept-html", "GET", CM + "/cm-a", headers={"Accept": "text/html"},
         status=406,
         xfail=X_NOT_ACCEPTABLE))
add(case("ctype", "accept-json", "GET", CM + "/cm-a", headers={"Accept": JSON},
         compare=("ctype", "fields"), fields=("kind", "apiVersion", "metadata.name", "data")))
add(case("ctype", "accept-any", "GET", CM + "/cm-a", headers={"Accept": "*/*"},
         compare=("ctype",)))

# -- Host header -----------------------------------------------------------------------------

_FOREIGN = Own((403,), "Forbidden", "foreign Host refused by design (DNS rebinding)")
add(case("host", "own-address", "GET", CM + "/cm-a", headers={"Host": "{host}"},
         compare=("fields",), fields=("metadata.name",)))
add(case("host", "localhost", "GET", CM + "/cm-a", headers={"Host": "localhost:{port}"},
         compare=("fields",), fields=("metadata.name",)))
add(case("host", "foreign", "GET", CM + "/cm-a", headers={"Host": "evil.example.com"},
         own=_FOREIGN))
add(case("host", "foreign-with-port", "GET", "/api/v1",
         headers={"Host": "evil.example.com:{port}"}, own=_FOREIGN))

# -- 404s -------------------------------------------------------------------------------------

NOT_FOUND: list[tuple[str, str, str]] = [
    ("configmap", CM + "/nope", ""),
    ("deployment", DEPLOY + "/nope", ""),
    ("namespace", "/api/v1/namespaces/nope-{run}", ""),
    ("node", "/api/v1/nodes/nope-{run}", ""),
    ("unknown-resource", "/api/v1/namespaces/{ns}/widgets", X_404_MSG),
    ("unknown-group-resource", "/apis/nope.example.com/v1/widgets", X_404_TEXT),
    ("cluster-scoped-under-namespace", "/api/v1/namespaces/{ns}/nodes", X_404_MSG),
    ("namespaced-object-at-cluster-scope", "/api/v1/configmaps/cm-a", X_NAMESPACED_AT_ROOT),
    ("deploy-scale-not-found", DEPLOY + "/nope/scale", X_SCALE),
    ("unknown-path", "/nope", X_404_TEXT),
    ("core-group-under-apis", "/apis/v1/pods", X_404_TEXT),
]
for _id, _path, _why in NOT_FOUND:
    add(case("notfound", _id, "GET", _path, status=404, xfail=_why))
add(case("notfound", "list-in-missing-namespace", "GET", "/api/v1/namespaces/nope-{run}/pods",
         compare=("list",)))
add(case("notfound", "trailing-slash", "GET", CM + "/", compare=("list",)))

# -- 405s -------------------------------------------------------------------------------------

METHODS: list[tuple[str, str, str, Any, int, str]] = [
    # (id, method, path, body, real status, xfail reason); writes go to {wns}
    ("put-collection", "PUT", WCM, cm_body("m-put"), 405, ""),
    ("post-named", "POST", WCM + "/cm-jp", cm_body("cm-jp"), 405, ""),
    ("patch-collection", "PATCH", WCM, {"data": {}}, 405, ""),
    ("post-discovery", "POST", "/api/v1", {}, 405, ""),
    ("delete-discovery", "DELETE", "/apis", None, 200, ""),
    ("post-watch", "POST", "/api/v1/watch/namespaces/{wns}/configmaps", cm_body("m-watch"),
     405, ""),
    ("post-status-subresource", "POST", WPODS + "/pod-st/status", {}, 405, ""),
]
for _id, _method, _path, _body, _status, _why in METHODS:
    add(case("method", _id, _method, _path, body=_body,
             ctype=MERGE if _method == "PATCH" else None, status=_status, xfail=_why))

# -- plain reads ------------------------------------------------------------------------------

add(case("read", "get-configmap", "GET", CM + "/cm-a",
         compare=("fields", "ctype"),
         fields=("kind", "apiVersion", "metadata.name", "metadata.namespace", "metadata.uid",
                 "metadata.labels", "data")))
add(case("read", "get-pod", "GET", PODS + "/pod-a",
         compare=("fields",), fields=("kind", "metadata.uid", "spec.nodeName", "status.phase")))
add(case("read", "get-namespace", "GET", "/api/v1/namespaces/{ns}",
         compare=("fields",), fields=("kind", "metadata.name", "status.phase")))
add(case("read", "get-node", "GET", "/api/v1/nodes/{node}", compare=("fields",),
         fields=("kind", "metadata.name")))
add(case("read", "get-deployment", "GET", DEPLOY + "/dep-a", compare=("fields",),
         fields=("kind", "apiVersion", "spec.replicas")))
add(case("read", "get-secret", "GET", "/api/v1/namespaces/{ns}/secrets/sec-b",
         compare=("fields",), fields=("type", "data")))
add(case("read", "get-service", "GET", "/api/v1/namespaces/{ns}/services/svc-a",
         compare=("fields",), fields=("spec.clusterIP", "spec.ports.*.port")))
add(case("read", "list-configmaps", "GET", CM, compare=("list", "ctype")))
add(case("read", "list-pods", "GET", PODS, compare=("list",)))
add(case("read", "list-secrets", "GET", "/api/v1/namespaces/{ns}/secrets", compare=("list",)))
add(case("read", "list-services", "GET", "/api/v1/namespaces/{ns}/services",
         compare=("list",)))
add(case("read", "list-deployments", "GET", DEPLOY, compare=("list",)))
add(case("read", "list-all-namespaces-pods", "GET", "/api/v1/pods",
         {"labelSelector": "conformance={run},set=ro"}, compare=("list",)))
add(case("read", "list-all-namespaces-deployments", "GET", "/apis/apps/v1/deployments",
         {"labelSelector": "conformance={run},set=ro"}, compare=("list",)))
add(case("read", "list-namespaces", "GET", "/api/v1/namespaces",
         {"labelSelector": "conformance={run}"}, compare=("list",)))
add(case("read", "list-nodes", "GET", "/api/v1/nodes", {"labelSelector": "conformance={run}"},
         compare=("list",)))
add(case("read", "get-rv-0", "GET", CM + "/cm-a", {"resourceVersion": "0"},
         compare=("fields",), fields=("metadata.name",)))
add(case("read", "watch-not-a-bool", "GET", CM,
         {"watch": "maybe", "timeoutSeconds": "1", "resourceVersion": "{rv_cm}"},
         xfail=X_WATCH_BOOL))
add(case("read", "timeout-garbage", "GET", CM, {"watch": "true", "timeoutSeconds": "x"},
         status=400, msg=False))


_seen: set[str] = set()
for _case in CASES:
    assert _case.id not in _seen, f"duplicate case id {_case.id}"
    _seen.add(_case.id)
del _seen
