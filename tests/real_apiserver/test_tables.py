"""Server-side printing parity: kube-apiserver's ``Table`` against ``KubeApiServer``'s.

For each built-in kind ``KubeApiServer`` serves, objects are created on the real
kube-apiserver (and given a status through ``/status`` where the printer reads
one), read back, and asked for as a ``meta.k8s.io/v1`` ``Table``. The same stored
objects are then seeded into a ``KubeApiServer`` and asked for the same way. The
column definitions (name, type, format, priority) must be equal, kubemirror's
``Cluster`` column (priority 1) last aside, and so must every cell of every row
but the AGE cells. Timestamps the printers show (RESTARTS' ``(3d ago)``, an
event's LAST SEEN) are three days old, so both servers print ``3d``.
"""

from __future__ import annotations

import base64
import copy
import datetime
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from kubemirror.client import KubeClient
from kubemirror.client.transport import new_connector
from kubemirror.envtest import EnvTest
from kubemirror.multicluster.server import KubeApiServer
from kubemirror.testing import new_storage, seed
from tests.real_apiserver.conftest import create_namespace, deployment, pod, unique

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
THREE_DAYS_AGO = (
    datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=3)
).strftime("%Y-%m-%dT%H:%M:%SZ")
MICRO_THREE_DAYS_AGO = THREE_DAYS_AGO.replace("Z", ".000000Z")


@dataclass
class Case:
    """One object: its create body, an optional status (PUT to ``/status``) and
    whether to delete it (it carries a finalizer, so it stays, terminating)."""

    body: dict[str, Any]
    status: dict[str, Any] | None = None
    terminate: bool = False
    label: str = ""


@dataclass
class Kind:
    prefix: str  # /api/v1 or /apis/<group>/v1
    resource: str
    namespaced: bool = True
    cases: Callable[[], list[Case]] = field(default=lambda: [])


def _named(body: dict[str, Any], name: str) -> dict[str, Any]:
    body = dict(body)
    body["metadata"] = {**body.get("metadata", {}), "name": name}
    return body


def _status_pod(
    status: dict[str, Any], *, init: dict[str, Any] | None = None, **spec: Any
) -> Case:
    body = pod("p")
    body["spec"].update(spec)
    if init is not None:
        body["spec"]["initContainers"] = [init]
    return Case(body, status)


def _terminated(exit_code: int = 1, reason: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"exitCode": exit_code, "startedAt": THREE_DAYS_AGO,
                           "finishedAt": THREE_DAYS_AGO}
    if reason:
        out["reason"] = reason
    return {"terminated": out}


def _cstatus(name: str, *, ready: bool = False, restarts: int = 0, started: bool | None = None,
             state: dict[str, Any] | None = None,
             last: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name, "ready": ready, "restartCount": restarts, "image": "registry.example/app:1",
        "imageID": "", "state": state or {"waiting": {"reason": "ContainerCreating"}},
        "lastState": last or {},
    }
    if started is not None:
        out["started"] = started
    return out


def _pods() -> list[Case]:
    running = {"running": {"startedAt": THREE_DAYS_AGO}}
    sidecar = {"name": "side", "image": "registry.example/side:1", "restartPolicy": "Always"}
    init = {"name": "init", "image": "registry.example/init:1"}
    return [
        Case(pod("p"), label="pending"),
        Case(pod("p", node="node-a"), label="scheduled"),
        _status_pod({"phase": "Pending", "nominatedNodeName": "node-b"}),
        _status_pod({"phase": "Running", "podIP": "10.4.0.7", "podIPs": [{"ip": "10.4.0.7"}],
                     "conditions": [{"type": "gate-a", "status": "True"},
                                    {"type": "Ready", "status": "True"}],
                     "containerStatuses": [_cstatus("app", ready=True, state=running,
                                                    started=True)]},
                    nodeName="node-a",
                    readinessGates=[{"conditionType": "gate-a"}, {"conditionType": "gate-b"}]),
        _status_pod({"phase": "Running", "containerStatuses": [_cstatus(
            "app", restarts=4, state={"waiting": {"reason": "CrashLoopBackOff"}},
            last=_terminated(2))]}),
        _status_pod({"phase": "Running", "containerStatuses": [_cstatus(
            "app", state=_terminated(0, "Completed"))]}),
        _status_pod({"phase": "Running", "containerStatuses": [_cstatus(
            "app", state=_terminated(137))]}),
        _status_pod({"phase": "Failed", "reason": "Evicted", "message": "low on memory"}),
        _status_pod({"phase": "Succeeded", "containerStatuses": [_cstatus(
            "app", state=_terminated(0, "Completed"))]}),
        _status_pod({"phase": "Pending", "initContainerStatuses": [_cstatus(
            "init", state={"waiting": {"reason": "PodInitializing"}})]}, init=init),
        _status_pod({"phase": "Pending", "initContainerStatuses": [_cstatus(
            "init", restarts=2, state={"waiting": {"reason": "CrashLoopBackOff"}},
            last=_terminated(1))]}, init=init),
        _status_pod({"phase": "Pending", "initContainerStatuses": [_cstatus(
            "init", state=_terminated(3))]}, init=init),
        _status_pod({"phase": "Running",
                     "conditions": [{"type": "Initialized", "status": "True"}],
                     "initContainerStatuses": [_cstatus(
                         "side", ready=True, started=True, restarts=1, state=running,
                         last=_terminated(1))],
                     "containerStatuses": [_cstatus("app", ready=True, state=running)]},
                    init=sidecar),
        _status_pod({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        Case({**pod("p"), "metadata": {"name": "p", "finalizers": ["example.com/keep"]}},
             terminate=True, label="terminating"),
    ]


def _services() -> list[Case]:
    ports = [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
             {"name": "dns", "port": 53, "protocol": "UDP"}]
    def svc(spec: dict[str, Any], status: dict[str, Any] | None = None) -> Case:
        return Case({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                     "spec": spec}, status)
    return [
        svc({"selector": {"app": "web", "tier": "fe"}, "ports": ports}),
        svc({"clusterIP": "None", "selector": {"app": "db"}, "ports": ports[:1]}),
        svc({"type": "NodePort", "ports": ports[:1], "externalIPs": ["192.0.2.9"]}),
        svc({"type": "LoadBalancer", "ports": ports[:1]}),
        svc({"type": "LoadBalancer", "ports": ports[:1]},
            {"loadBalancer": {"ingress": [{"ip": "203.0.113.5"}, {"hostname": "lb.example"}]}}),
        svc({"type": "ExternalName", "externalName": "db.example.com"}),
    ]


def _endpoints() -> list[Case]:
    def ep(subsets: list[dict[str, Any]]) -> Case:
        return Case({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e"},
                     "subsets": subsets})
    addrs = [{"ip": f"10.9.0.{i}"} for i in range(1, 4)]
    return [
        ep([]),
        ep([{"addresses": addrs[:2], "ports": [{"port": 80}]}]),
        ep([{"addresses": addrs, "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]}]),
        ep([{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 443}]}]),
    ]


def _configmaps() -> list[Case]:
    return [
        Case({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
              "data": {"a": "1", "b": "2"}, "binaryData": {"c": base64.b64encode(b"x").decode()}}),
        Case({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
    ]


def _secrets() -> list[Case]:
    return [
        Case({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
              "data": {"k": base64.b64encode(b"v").decode()}}),
        Case({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
              "type": "example.com/custom", "stringData": {"a": "1", "b": "2"}}),
    ]


def _namespaces() -> list[Case]:
    return [Case({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}})]


def _nodes() -> list[Case]:
    def node(labels: dict[str, str], status: dict[str, Any], **spec: Any) -> Case:
        return Case({"apiVersion": "v1", "kind": "Node",
                     "metadata": {"name": "n", "labels": labels}, "spec": spec}, status)
    info = {"machineID": "m", "systemUUID": "s", "bootID": "b", "kernelVersion": "6.1.0",
            "osImage": "Debian 12", "containerRuntimeVersion": "containerd://1.7",
            "kubeletVersion": "v1.37.2", "kubeProxyVersion": "", "operatingSystem": "linux",
            "architecture": "amd64"}
    return [
        node({}, {}),
        node({"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "edge"}, {
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.5"},
                          {"type": "ExternalIP", "address": "198.51.100.5"}],
            "nodeInfo": info}, unschedulable=True),
        node({}, {"conditions": [{"type": "Ready", "status": "False"}],
                  "nodeInfo": {**info, "architecture": "", "osImage": ""}}),
    ]


def _events() -> list[Case]:
    involved = {"kind": "Pod", "name": "web-0",
                "fieldPath": "spec.containers{app}"}
    return [
        Case({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "ev"},
              "involvedObject": involved, "reason": "BackOff", "type": "Warning",
              "message": "  Back-off restarting  ", "count": 7,
              "firstTimestamp": THREE_DAYS_AGO, "lastTimestamp": THREE_DAYS_AGO,
              "source": {"component": "kubelet", "host": "node-a"}}),
        Case({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "ev"},
              "involvedObject": {"kind": "ConfigMap"}, "reason": "Started", "type": "Normal",
              "eventTime": MICRO_THREE_DAYS_AGO, "action": "Start",
              "reportingComponent": "example.com/ctl", "reportingInstance": "ctl-1"}),
    ]


def _template(name: str, node_selector: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [
        {"name": "app", "image": "registry.example/app:1"},
        {"name": "log", "image": "registry.example/log:2"}]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"metadata": {"labels": {"app": name}}, "spec": spec}


def _replicationcontrollers() -> list[Case]:
    return [Case({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "r"},
                  "spec": {"replicas": 3, "selector": {"app": "r"}, "template": _template("r")}},
                 {"replicas": 2, "readyReplicas": 1})]


def _apps(kind: str, status: dict[str, Any], **spec: Any) -> Case:
    selector = {"matchLabels": {"app": "x"},
                "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["b", "a"]}]}
    return Case({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "x"},
                 "spec": {"selector": selector, "template": _template("x"), **spec}}, status)


def _deployments() -> list[Case]:
    return [
        Case(deployment("d")),
        _apps("Deployment", {"replicas": 3, "updatedReplicas": 2, "readyReplicas": 1,
                             "availableReplicas": 1}, replicas=3),
    ]


def _replicasets() -> list[Case]:
    return [_apps("ReplicaSet", {"replicas": 2, "readyReplicas": 1}, replicas=4)]


def _statefulsets() -> list[Case]:
    return [_apps("StatefulSet", {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2},
                  replicas=5, serviceName="x")]


def _daemonsets() -> list[Case]:
    case = _apps("DaemonSet", {"desiredNumberScheduled": 4, "currentNumberScheduled": 3,
                               "numberReady": 2, "updatedNumberScheduled": 1,
                               "numberAvailable": 1, "numberMisscheduled": 0})
    case.body["spec"]["template"] = _template("x", {"disk": "ssd", "arch": "amd64"})
    return [case]


def _ingresses() -> list[Case]:
    backend = {"service": {"name": "web", "port": {"number": 80}}}
    def rule(host: str) -> dict[str, Any]:
        return {"host": host, "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": backend}]}}
    return [
        Case({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"},
              "spec": {"defaultBackend": backend}}),
        Case({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"},
              "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["a.example"]}],
                       "rules": [rule(f"{c}.example") for c in "abcde"]}},
             {"loadBalancer": {"ingress": [{"ip": "203.0.113.8"}, {"hostname": "x.example"}]}}),
    ]


def _leases() -> list[Case]:
    return [
        Case({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"},
              "spec": {"holderIdentity": "node-a"}}),
        Case({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"},
              "spec": {}}),
    ]


KINDS = {
    "pods": Kind("/api/v1", "pods", cases=_pods),
    "services": Kind("/api/v1", "services", cases=_services),
    "endpoints": Kind("/api/v1", "endpoints", cases=_endpoints),
    "configmaps": Kind("/api/v1", "configmaps", cases=_configmaps),
    "secrets": Kind("/api/v1", "secrets", cases=_secrets),
    "namespaces": Kind("/api/v1", "namespaces", namespaced=False, cases=_namespaces),
    "nodes": Kind("/api/v1", "nodes", namespaced=False, cases=_nodes),
    "events": Kind("/api/v1", "events", cases=_events),
    "replicationcontrollers": Kind("/api/v1", "replicationcontrollers",
                                   cases=_replicationcontrollers),
    "deployments": Kind("/apis/apps/v1", "deployments", cases=_deployments),
    "replicasets": Kind("/apis/apps/v1", "replicasets", cases=_replicasets),
    "statefulsets": Kind("/apis/apps/v1", "statefulsets", cases=_statefulsets),
    "daemonsets": Kind("/apis/apps/v1", "daemonsets", cases=_daemonsets),
    "ingresses": Kind("/apis/networking.k8s.io/v1", "ingresses", cases=_ingresses),
    "leases": Kind("/apis/coordination.k8s.io/v1", "leases", cases=_leases),
}


@pytest_asyncio.fixture
async def real_http(real_env: EnvTest) -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp session authenticated to the real server with the admin certificate."""
    connector = new_connector(real_env.ssl_context(client_cert=True))
    async with aiohttp.ClientSession(real_env.url, connector=connector) as session:
        yield session


async def _call(http: aiohttp.ClientSession, method: str, path: str,
                body: Any = None, accept: str = "application/json") -> Any:
    async with http.request(method, path, json=body, headers={"Accept": accept}) as resp:
        payload = await resp.json()
        assert resp.status < 300, (method, path, resp.status, payload.get("message", payload))
        return payload


def _comparable_columns(table: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(c["name"], c["type"], c["format"], c["priority"]) for c in table["columnDefinitions"]]


@pytest.mark.parametrize("resource", list(KINDS))
async def test_table_columns_and_cells_match_kube_apiserver(
    resource: str, real_http: aiohttp.ClientSession, real_env: EnvTest
) -> None:
    kind = KINDS[resource]
    async with KubeClient(real_env.client_config) as client:
        namespace = await create_namespace(client)
    stored: list[dict[str, Any]] = []
    real_rows: list[list[Any]] = []
    real_columns: list[tuple[Any, ...]] = []
    for case in kind.cases():
        name = unique(resource[:4])
        body = _named(case.body, name)
        if "involvedObject" in body:  # an event is about an object of its namespace
            body["involvedObject"] = {**body["involvedObject"], "namespace": namespace}
        scope = f"/namespaces/{namespace}" if kind.namespaced else ""
        collection = f"{kind.prefix}{scope}/{kind.resource}"
        created = await _call(real_http, "POST", collection, body)
        path = f"{collection}/{name}"
        if case.status is not None:
            created["status"] = {**(created.get("status") or {}), **case.status}
            await _call(real_http, "PUT", f"{path}/status", created)
        if case.terminate:
            await _call(real_http, "DELETE", path)
        obj = await _call(real_http, "GET", path)
        stored.append(obj)
        table = await _call(real_http, "GET", path, accept=TABLE)
        real_columns = _comparable_columns(table)
        [row] = table["rows"]
        real_rows.append(row["cells"])
        if case.terminate:  # let the object go, so it is not left terminating forever
            released = copy.deepcopy(obj)
            released["metadata"]["finalizers"] = []
            await _call(real_http, "PUT", path, released)
        elif resource == "nodes":  # cluster-scoped: do not leave them to other tests
            await _call(real_http, "DELETE", path)

    storage = new_storage()
    seed(storage, stored, cluster="east")
    async with KubeApiServer(storage) as server, aiohttp.ClientSession(server.url) as own:
        own_rows = []
        own_columns: list[tuple[Any, ...]] = []
        for obj in stored:
            meta = obj["metadata"]
            scope = f"/namespaces/{meta['namespace']}" if kind.namespaced else ""
            path = f"{kind.prefix}{scope}/{kind.resource}/{meta['name']}"
            table = await _call(own, "GET", path, accept=TABLE)
            own_columns = _comparable_columns(table)
            [row] = table["rows"]
            own_rows.append(row["cells"])

    assert own_columns[-1] == ("Cluster", "string", "", 1)
    assert own_columns[:-1] == real_columns
    age = [c[0] for c in real_columns].index("Age") if ("Age", "string", "", 0) in real_columns \
        else None
    for obj, real, own_cells in zip(stored, real_rows, own_rows, strict=True):
        assert own_cells[-1] == "east"
        mine = own_cells[:-1]
        if age is not None:
            real, mine = real[:age] + real[age + 1:], mine[:age] + mine[age + 1:]
        assert mine == real, (obj["metadata"]["name"], obj.get("status"))

