"""Server-side printing: objects as ``meta.k8s.io/v1`` ``Table`` rows (multicluster layer).

kubectl asks for ``Accept: application/json;as=Table;g=meta.k8s.io;v=v1`` and
prints the columns the server chose (those of priority 1 only with ``-o wide``).
For every built-in kind ``KubeApiServer`` serves (pods, services, endpoints,
configmaps, secrets, namespaces, nodes, events, replicationcontrollers,
deployments, replicasets, statefulsets, daemonsets, ingresses, leases) the
columns, their order, types, formats and priorities and the way each cell is
computed follow kube-apiserver's printers (``pkg/printers/internalversion`` of
Kubernetes v1.37: a Pod's STATUS from its phase, reason and container states,
RESTARTS with ``(5m ago)``, ages in ``duration.HumanDuration`` form, ...). The
server always prints the wide form, as kube-apiserver does. Other kinds get
NAME/AGE. Every table ends with kubemirror's own ``Cluster`` column (priority 1).

Column descriptions that kube-apiserver takes from the API documentation are
read from the ``kubernetes_asyncio`` models (``openapi.field_description``) the
first time a kind's columns are asked for. Pure functions; ``now`` is injectable
for tests.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubemirror import errors, selectors
from kubemirror.multicluster.storage import CLUSTER_ANNOTATION
from kubemirror.types import Obj

__all__ = ["column_definitions", "format_age", "human_duration", "table_row", "to_table"]

_Cells = Callable[[Obj, datetime.datetime], list[Any]]
_Doc = str | tuple[str, str]
"""A literal description, or (kubernetes_asyncio model class, JSON field) to read it from."""


# -- time ---------------------------------------------------------------------------------


def human_duration(seconds_total: float) -> str:
    """apimachinery's ``duration.HumanDuration`` of a span in seconds (``3m20s``, ``5d2h``)."""
    seconds = int(seconds_total)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def _parse_time(value: Any) -> datetime.datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        then = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return then if then.tzinfo else then.replace(tzinfo=datetime.UTC)


def _since(then: datetime.datetime | None, now: datetime.datetime) -> str:
    """``translateTimestampSince``: ``<unknown>`` for a zero time."""
    if then is None:
        return "<unknown>"
    return human_duration((now - then).total_seconds())


def format_age(created: str | None, now: datetime.datetime) -> str:
    """kubectl's age of a timestamp (``5s``, ``3m20s``, ``2d``), ``<unknown>`` without one."""
    return _since(_parse_time(created), now)


# -- small helpers ------------------------------------------------------------------------


def _d(obj: Any, *path: str) -> Any:
    """The mapping at ``path`` below ``obj`` ({} when absent or not a mapping)."""
    for key in path:
        obj = obj.get(key) if isinstance(obj, Mapping) else None
    return obj if isinstance(obj, Mapping) else {}


def _l(obj: Any, *path: str) -> list[Any]:
    """The list at ``path`` below ``obj`` ([] when absent), mappings only."""
    *parents, last = path
    value = _d(obj, *parents).get(last)
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _name(obj: Obj) -> str:
    return str(_d(obj, "metadata").get("name") or "")


def _age(obj: Obj, now: datetime.datetime) -> str:
    return format_age(_d(obj, "metadata").get("creationTimestamp"), now)


def _cluster(obj: Obj) -> str:
    return str(_d(obj, "metadata", "annotations").get(CLUSTER_ANNOTATION, ""))


def _format_labels(labels: Any) -> str:
    """``labels.FormatLabels``: ``a=1,b=2`` sorted by key, ``<none>`` when empty."""
    if not isinstance(labels, Mapping) or not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def _selector_text(selector: Any) -> str | None:
    """``LabelSelectorAsSelector(s).String()``; ``None`` when it does not parse."""
    if selector is None:
        return ""  # labels.Nothing()
    try:
        return str(selectors.LabelSelector.from_dict(selector))
    except (errors.KubemirrorError, TypeError, ValueError):
        return None


def _format_label_selector(selector: Any) -> str:
    """``metav1.FormatLabelSelector``: ``<none>`` when empty, ``<error>`` when invalid."""
    text = _selector_text(selector)
    if text is None:
        return "<error>"
    return text or "<none>"


def _containers(containers: Iterable[Mapping[str, Any]]) -> tuple[str, str]:
    """``layoutContainerCells``: comma-joined names and images."""
    items = list(containers)
    return (
        ",".join(str(c.get("name") or "") for c in items),
        ",".join(str(c.get("image") or "") for c in items),
    )


def _template_containers(obj: Obj) -> tuple[str, str]:
    return _containers(_l(obj, "spec", "template", "spec", "containers"))


# -- the kinds ----------------------------------------------------------------------------


def _pod(obj: Obj, now: datetime.datetime) -> list[Any]:
    """``printPod``: NAME READY STATUS RESTARTS AGE | IP NODE NOMINATED-NODE READINESS-GATES."""
    spec, st, meta = _d(obj, "spec"), _d(obj, "status"), _d(obj, "metadata")
    restarts = restartable_restarts = ready = 0
    total = len(_l(spec, "containers"))
    last_restart: datetime.datetime | None = None
    last_restartable: datetime.datetime | None = None

    def later(a: datetime.datetime | None, status: Mapping[str, Any]) -> datetime.datetime | None:
        terminated = _d(status, "lastState").get("terminated")
        if not isinstance(terminated, Mapping):
            return a
        finished = _parse_time(terminated.get("finishedAt"))
        return finished if finished is not None and (a is None or a < finished) else a

    phase = str(st.get("phase") or "")
    reason = str(st.get("reason") or phase)
    conditions = _l(st, "conditions")
    for cond in conditions:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    init_specs = {str(c.get("name")): c for c in _l(spec, "initContainers")}

    def restartable(name: Any) -> bool:
        container = init_specs.get(str(name))
        return container is not None and container.get("restartPolicy") == "Always"

    total += sum(1 for c in init_specs.values() if c.get("restartPolicy") == "Always")
    initializing = False
    for i, cs in enumerate(_l(st, "initContainerStatuses")):
        restarts += _int(cs.get("restartCount"))
        last_restart = later(last_restart, cs)
        if restartable(cs.get("name")):
            restartable_restarts += _int(cs.get("restartCount"))
            last_restartable = later(last_restartable, cs)
        state = _d(cs, "state")
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if isinstance(terminated, Mapping) and _int(terminated.get("exitCode")) == 0:
            continue
        if restartable(cs.get("name")) and cs.get("started") is True:
            if cs.get("ready"):
                ready += 1
            continue
        if isinstance(terminated, Mapping):
            if terminated.get("reason"):
                reason = f"Init:{terminated['reason']}"
            elif _int(terminated.get("signal")):
                reason = f"Init:Signal:{_int(terminated.get('signal'))}"
            else:
                reason = f"Init:ExitCode:{_int(terminated.get('exitCode'))}"
        elif (
            isinstance(waiting, Mapping)
            and waiting.get("reason")
            and waiting.get("reason") != "PodInitializing"
        ):
            reason = f"Init:{waiting['reason']}"
        else:
            reason = f"Init:{i}/{len(_l(spec, 'initContainers'))}"
        initializing = True
        break

    initialized = next(
        (c.get("status") == "True" for c in conditions if c.get("type") == "Initialized"), False
    )
    if not initializing or initialized:
        restarts, last_restart = restartable_restarts, last_restartable
        has_running = False
        error_reason = ""
        for cs in reversed(_l(st, "containerStatuses")):
            restarts += _int(cs.get("restartCount"))
            last_restart = later(last_restart, cs)
            state = _d(cs, "state")
            terminated, waiting = state.get("terminated"), state.get("waiting")
            if isinstance(waiting, Mapping) and waiting.get("reason"):
                reason = str(waiting["reason"])
            elif isinstance(terminated, Mapping):
                if terminated.get("reason"):
                    reason = str(terminated["reason"])
                elif _int(terminated.get("signal")):
                    reason = f"Signal:{_int(terminated.get('signal'))}"
                else:
                    reason = f"ExitCode:{_int(terminated.get('exitCode'))}"
                if _int(terminated.get("exitCode")) != 0:
                    error_reason = reason
            elif cs.get("ready") and isinstance(state.get("running"), Mapping):
                has_running = True
                ready += 1
        if reason == "Completed":
            pod_ready = any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
            )
            if has_running and pod_ready:
                reason = "Running"
            elif error_reason:
                reason = error_reason
            elif has_running:
                reason = "NotReady"

    if meta.get("deletionTimestamp") and st.get("reason") == "NodeLost":
        reason = "Unknown"
    elif meta.get("deletionTimestamp") and phase not in ("Failed", "Succeeded"):
        reason = "Terminating"

    restarts_text = str(restarts)
    if restarts != 0 and last_restart is not None:
        restarts_text = f"{restarts} ({_since(last_restart, now)} ago)"

    pod_ips = _l(st, "podIPs")
    pod_ip = str(pod_ips[0].get("ip") or "") if pod_ips else str(st.get("podIP") or "")
    gates = _l(spec, "readinessGates")
    gates_text = "<none>"
    if gates:
        true_conditions = 0
        for gate in gates:
            for cond in conditions:
                if cond.get("type") == gate.get("conditionType"):
                    true_conditions += cond.get("status") == "True"
                    break
        gates_text = f"{true_conditions}/{len(gates)}"
    return [
        _name(obj),
        f"{ready}/{total}",
        reason,
        restarts_text,
        _age(obj, now),
        pod_ip or "<none>",
        str(spec.get("nodeName") or "") or "<none>",
        str(st.get("nominatedNodeName") or "") or "<none>",
        gates_text,
    ]


def _load_balancer(status: Mapping[str, Any]) -> list[str]:
    """``loadBalancerStatusStringer`` (wide): sorted unique IPs or hostnames."""
    found = {
        str(i.get("ip") or i.get("hostname")) for i in _l(status, "loadBalancer", "ingress")
        if i.get("ip") or i.get("hostname")
    }
    return sorted(found)


def _service_external_ip(spec: Mapping[str, Any], status: Mapping[str, Any]) -> str:
    external = [str(ip) for ip in spec.get("externalIPs") or []]
    svc_type = spec.get("type") or "ClusterIP"
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if svc_type == "LoadBalancer":
        lb = _load_balancer(status)
        if external:
            return ",".join([*lb, *external])
        return ",".join(lb) if lb else "<pending>"
    if svc_type == "ExternalName":
        return str(spec.get("externalName") or "")
    return "<unknown>"


def _service(obj: Obj, now: datetime.datetime) -> list[Any]:
    spec = _d(obj, "spec")
    cluster_ips = [str(ip) for ip in spec.get("clusterIPs") or []]
    if not cluster_ips and spec.get("clusterIP"):
        cluster_ips = [str(spec["clusterIP"])]
    ports = []
    for port in _l(spec, "ports"):
        protocol = port.get("protocol") or "TCP"
        if _int(port.get("nodePort")) > 0:
            ports.append(f"{_int(port.get('port'))}:{_int(port.get('nodePort'))}/{protocol}")
        else:
            ports.append(f"{_int(port.get('port'))}/{protocol}")
    return [
        _name(obj),
        str(spec.get("type") or "ClusterIP"),
        cluster_ips[0] if cluster_ips else "<none>",
        _service_external_ip(spec, _d(obj, "status")),
        ",".join(ports) or "<none>",
        _age(obj, now),
        _format_labels(spec.get("selector")),
    ]


def _join_host_port(ip: str, port: int) -> str:
    try:
        is_v6 = isinstance(ipaddress.ip_address(ip), ipaddress.IPv6Address)
    except ValueError:
        is_v6 = ":" in ip
    return f"[{ip}]:{port}" if is_v6 else f"{ip}:{port}"


def _endpoints(obj: Obj, now: datetime.datetime) -> list[Any]:
    """``formatEndpoints``: up to three ``ip:port``, then ``+ N more...``."""
    subsets = _l(obj, "subsets")
    if not subsets:
        text = "<none>"
    else:
        shown: list[str] = []
        more = False
        count = 0
        for subset in subsets:
            addresses = [str(a.get("ip") or "") for a in _l(subset, "addresses")]
            ports = _l(subset, "ports")
            targets: list[list[str]] = (
                [addresses] if not ports
                else [[_join_host_port(a, _int(p.get("port"))) for a in addresses] for p in ports]
            )
            for group in targets:
                count += len(group)
                for item in group:
                    if len(shown) == 3:
                        more = True
                        break
                    shown.append(item)
        text = ",".join(shown)
        if more:
            text = f"{text} + {count - 3} more..."
    return [_name(obj), text, _age(obj, now)]


def _configmap(obj: Obj, now: datetime.datetime) -> list[Any]:
    return [_name(obj), len(_d(obj, "data")) + len(_d(obj, "binaryData")), _age(obj, now)]


def _secret(obj: Obj, now: datetime.datetime) -> list[Any]:
    return [_name(obj), str(obj.get("type") or "Opaque"), len(_d(obj, "data")), _age(obj, now)]


def _namespace(obj: Obj, now: datetime.datetime) -> list[Any]:
    return [_name(obj), str(_d(obj, "status").get("phase") or ""), _age(obj, now)]


def _node(obj: Obj, now: datetime.datetime) -> list[Any]:
    st = _d(obj, "status")
    ready = {str(c.get("type")): c for c in _l(st, "conditions")}.get("Ready")
    status = ["Unknown" if ready is None else
              "Ready" if ready.get("status") == "True" else "NotReady"]
    if _d(obj, "spec").get("unschedulable"):
        status.append("SchedulingDisabled")
    roles = set()
    for key, value in _d(obj, "metadata", "labels").items():
        if key.startswith("node-role.kubernetes.io/") and key != "node-role.kubernetes.io/":
            roles.add(key[len("node-role.kubernetes.io/"):])
        elif key == "kubernetes.io/role" and value:
            roles.add(str(value))
    info = _d(st, "nodeInfo")

    def address(kind: str) -> str:
        found = [a for a in _l(st, "addresses") if a.get("type") == kind]
        return str(found[0].get("address") or "") if found else "<none>"

    kernel = str(info.get("kernelVersion") or "") or "<unknown>"
    if info.get("architecture"):
        kernel += f" ({info['architecture']})"
    return [
        _name(obj),
        ",".join(status),
        ",".join(sorted(roles)) or "<none>",
        _age(obj, now),
        str(info.get("kubeletVersion") or ""),
        address("InternalIP"),
        address("ExternalIP"),
        str(info.get("osImage") or "") or "<unknown>",
        kernel,
        str(info.get("containerRuntimeVersion") or "") or "<unknown>",
    ]


def _event(obj: Obj, now: datetime.datetime) -> list[Any]:
    first = _parse_time(obj.get("firstTimestamp"))
    first_text = _since(first if first else _parse_time(obj.get("eventTime")), now)
    last = _parse_time(obj.get("lastTimestamp"))
    last_text = _since(last, now) if last else first_text
    count = _int(obj.get("count"))
    series = obj.get("series")
    if isinstance(series, Mapping):
        last_text = _since(_parse_time(series.get("lastObservedTime")), now)
        count = _int(series.get("count"))
    elif count == 0:
        count = 1
    involved = _d(obj, "involvedObject")
    kind = str(involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = _d(obj, "source")
    component = str(source.get("component") or obj.get("reportingComponent") or "")
    instance = str(source.get("host") or obj.get("reportingInstance") or "")
    return [
        last_text,
        str(obj.get("type") or ""),
        str(obj.get("reason") or ""),
        target,
        str(involved.get("fieldPath") or ""),
        f"{component}, {instance}" if instance else component,
        str(obj.get("message") or "").strip(),
        first_text,
        count,
        _name(obj),
    ]


def _replica_counts(obj: Obj, now: datetime.datetime) -> list[Any]:
    """ReplicaSet and ReplicationController: DESIRED CURRENT READY AGE | wide."""
    spec, st = _d(obj, "spec"), _d(obj, "status")
    names, images = _template_containers(obj)
    if obj.get("kind") == "ReplicationController":
        selector = _format_labels(spec.get("selector"))
    else:
        selector = _format_label_selector(spec.get("selector"))
    return [
        _name(obj),
        _int(spec.get("replicas")),
        _int(st.get("replicas")),
        _int(st.get("readyReplicas")),
        _age(obj, now),
        names,
        images,
        selector,
    ]


def _deployment(obj: Obj, now: datetime.datetime) -> list[Any]:
    spec, st = _d(obj, "spec"), _d(obj, "status")
    names, images = _template_containers(obj)
    selector = _selector_text(spec.get("selector"))
    return [
        _name(obj),
        f"{_int(st.get('readyReplicas'))}/{_int(spec.get('replicas'))}",
        _int(st.get("updatedReplicas")),
        _int(st.get("availableReplicas")),
        _age(obj, now),
        names,
        images,
        "<invalid>" if selector is None else selector,
    ]


def _statefulset(obj: Obj, now: datetime.datetime) -> list[Any]:
    spec, st = _d(obj, "spec"), _d(obj, "status")
    names, images = _template_containers(obj)
    ready = f"{_int(st.get('readyReplicas'))}/{_int(spec.get('replicas'))}"
    return [_name(obj), ready, _age(obj, now), names, images]


def _daemonset(obj: Obj, now: datetime.datetime) -> list[Any]:
    spec, st = _d(obj, "spec"), _d(obj, "status")
    names, images = _template_containers(obj)
    return [
        _name(obj),
        _int(st.get("desiredNumberScheduled")),
        _int(st.get("currentNumberScheduled")),
        _int(st.get("numberReady")),
        _int(st.get("updatedNumberScheduled")),
        _int(st.get("numberAvailable")),
        _format_labels(_d(spec, "template", "spec").get("nodeSelector")),
        _age(obj, now),
        names,
        images,
        _format_label_selector(spec.get("selector")),
    ]


def _ingress(obj: Obj, now: datetime.datetime) -> list[Any]:
    spec = _d(obj, "spec")
    rules = _l(spec, "rules")
    hosts: list[str] = []
    more = False
    for rule in rules:
        if len(hosts) == 3:
            more = True
        if not more and rule.get("host"):
            hosts.append(str(rule["host"]))
    hosts_text = ",".join(hosts) if hosts else "*"
    if hosts and more:
        hosts_text = f"{hosts_text} + {len(rules) - 3} more..."
    class_name = spec.get("ingressClassName")
    return [
        _name(obj),
        "<none>" if class_name is None else str(class_name),
        hosts_text,
        ",".join(_load_balancer(_d(obj, "status"))),
        "80, 443" if _l(spec, "tls") else "80",
        _age(obj, now),
    ]


def _lease(obj: Obj, now: datetime.datetime) -> list[Any]:
    return [_name(obj), str(_d(obj, "spec").get("holderIdentity") or ""), _age(obj, now)]


def _name_age(obj: Obj, now: datetime.datetime) -> list[Any]:
    return [_name(obj), _age(obj, now)]


# -- column tables --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Col:
    name: str
    type: str = "string"
    priority: int = 0
    doc: _Doc = ""
    format: str = ""


_META_NAME = ("V1ObjectMeta", "name")
_NAME = _Col("Name", doc=_META_NAME, format="name")
_AGE = _Col("Age", doc=("V1ObjectMeta", "creationTimestamp"))
_CONTAINERS = _Col("Containers", priority=1, doc="Names of each container in the template.")
_IMAGES = _Col("Images", priority=1, doc="Images referenced by each container in the template.")


def _replica_columns(spec: str, status: str) -> list[_Col]:
    return [
        _NAME,
        _Col("Desired", "integer", doc=(spec, "replicas")),
        _Col("Current", "integer", doc=(status, "replicas")),
        _Col("Ready", "integer", doc=(status, "readyReplicas")),
        _AGE,
        _CONTAINERS,
        _IMAGES,
        _Col("Selector", priority=1, doc=(spec, "selector")),
    ]


_KINDS: dict[str, tuple[list[_Col], _Cells]] = {
    "Pod": (
        [
            _NAME,
            _Col("Ready", doc="The aggregate readiness state of this pod for accepting traffic."),
            _Col("Status", doc="The aggregate status of the containers in this pod."),
            _Col(
                "Restarts",
                doc="The number of times the containers in this pod have been restarted "
                "and when the last container in this pod has restarted.",
            ),
            _AGE,
            _Col("IP", priority=1, doc=("V1PodStatus", "podIP")),
            _Col("Node", priority=1, doc=("V1PodSpec", "nodeName")),
            _Col("Nominated Node", priority=1, doc=("V1PodStatus", "nominatedNodeName")),
            _Col("Readiness Gates", priority=1, doc=("V1PodSpec", "readinessGates")),
        ],
        _pod,
    ),
    "Service": (
        [
            _NAME,
            _Col("Type", doc=("V1ServiceSpec", "type")),
            _Col("Cluster-IP", doc=("V1ServiceSpec", "clusterIP")),
            _Col("External-IP", doc=("V1ServiceSpec", "externalIPs")),
            _Col("Port(s)", doc=("V1ServiceSpec", "ports")),
            _AGE,
            _Col("Selector", priority=1, doc=("V1ServiceSpec", "selector")),
        ],
        _service,
    ),
    "Endpoints": (
        [_NAME, _Col("Endpoints", doc=("V1Endpoints", "subsets")), _AGE],
        _endpoints,
    ),
    "ConfigMap": ([_NAME, _Col("Data", doc=("V1ConfigMap", "data")), _AGE], _configmap),
    "Secret": (
        [_NAME, _Col("Type", doc=("V1Secret", "type")), _Col("Data", doc=("V1Secret", "data")),
         _AGE],
        _secret,
    ),
    "Namespace": ([_NAME, _Col("Status", doc="The status of the namespace"), _AGE], _namespace),
    "Node": (
        [
            _NAME,
            _Col("Status", doc="The status of the node"),
            _Col("Roles", doc="The roles of the node"),
            _AGE,
            _Col("Version", doc=("V1NodeSystemInfo", "kubeletVersion")),
            _Col("Internal-IP", priority=1, doc=("V1NodeStatus", "addresses")),
            _Col("External-IP", priority=1, doc=("V1NodeStatus", "addresses")),
            _Col("OS-Image", priority=1, doc=("V1NodeSystemInfo", "osImage")),
            _Col("Kernel-Version", priority=1, doc=("V1NodeSystemInfo", "kernelVersion")),
            _Col(
                "Container-Runtime", priority=1, doc=("V1NodeSystemInfo", "containerRuntimeVersion")
            ),
        ],
        _node,
    ),
    "Event": (
        [
            _Col("Last Seen", doc=("CoreV1Event", "lastTimestamp")),
            _Col("Type", doc=("CoreV1Event", "type")),
            _Col("Reason", doc=("CoreV1Event", "reason")),
            _Col("Object", doc=("CoreV1Event", "involvedObject")),
            _Col("Subobject", priority=1, doc=("V1ObjectReference", "fieldPath")),
            _Col("Source", priority=1, doc=("CoreV1Event", "source")),
            _Col("Message", doc=("CoreV1Event", "message")),
            _Col("First Seen", priority=1, doc=("CoreV1Event", "firstTimestamp")),
            _Col("Count", priority=1, doc=("CoreV1Event", "count")),
            _Col("Name", priority=1, doc=_META_NAME, format="name"),
        ],
        _event,
    ),
    "ReplicationController": (
        _replica_columns("V1ReplicationControllerSpec", "V1ReplicationControllerStatus"),
        _replica_counts,
    ),
    "ReplicaSet": (_replica_columns("V1ReplicaSetSpec", "V1ReplicaSetStatus"), _replica_counts),
    "Deployment": (
        [
            _NAME,
            _Col("Ready", doc="Number of the pod with ready state"),
            _Col("Up-to-date", doc=("V1DeploymentStatus", "updatedReplicas")),
            _Col("Available", doc=("V1DeploymentStatus", "availableReplicas")),
            _AGE,
            _CONTAINERS,
            _IMAGES,
            _Col("Selector", priority=1, doc=("V1DeploymentSpec", "selector")),
        ],
        _deployment,
    ),
    "StatefulSet": (
        [_NAME, _Col("Ready", doc="Number of the pod with ready state"), _AGE, _CONTAINERS,
         _IMAGES],
        _statefulset,
    ),
    "DaemonSet": (
        [
            _NAME,
            _Col("Desired", "integer", doc=("V1DaemonSetStatus", "desiredNumberScheduled")),
            _Col("Current", "integer", doc=("V1DaemonSetStatus", "currentNumberScheduled")),
            _Col("Ready", "integer", doc=("V1DaemonSetStatus", "numberReady")),
            _Col("Up-to-date", "integer", doc=("V1DaemonSetStatus", "updatedNumberScheduled")),
            _Col("Available", "integer", doc=("V1DaemonSetStatus", "numberAvailable")),
            _Col("Node Selector", doc=("V1PodSpec", "nodeSelector")),
            _AGE,
            _CONTAINERS,
            _IMAGES,
            _Col("Selector", priority=1, doc=("V1DaemonSetSpec", "selector")),
        ],
        _daemonset,
    ),
    "Ingress": (
        [
            _NAME,
            _Col(
                "Class",
                doc="The name of the IngressClass resource that should be used for "
                "additional configuration",
            ),
            _Col("Hosts", doc="Hosts that incoming requests are matched against before the "
                 "ingress rule"),
            _Col("Address", doc="Address is a list containing ingress points for the "
                 "load-balancer"),
            _Col("Ports", doc="Ports of TLS configurations that open"),
            _AGE,
        ],
        _ingress,
    ),
    "Lease": ([_NAME, _Col("Holder", doc=("V1LeaseSpec", "holderIdentity")), _AGE], _lease),
}
_DEFAULT: tuple[list[_Col], _Cells] = ([_NAME, _AGE], _name_age)
_CLUSTER = _Col(
    "Cluster", priority=1, doc="The cluster kubemirror mirrored this object from."
)
"""kubemirror's own last column, shown by ``-o wide``."""


def _description(doc: _Doc) -> str:
    if isinstance(doc, str):
        return doc
    from kubemirror.multicluster import openapi

    return openapi.field_description(*doc)


@functools.cache
def _definitions(kind: str) -> tuple[tuple[str, str, str, str, int], ...]:
    cols = [*_KINDS.get(kind, _DEFAULT)[0], _CLUSTER]
    return tuple((c.name, c.type, c.format, _description(c.doc), c.priority) for c in cols)


def column_definitions(kind: str) -> list[dict[str, Any]]:
    """The ``columnDefinitions`` of a table of ``kind`` objects."""
    return [
        {"name": name, "type": type_, "format": format_, "description": doc, "priority": priority}
        for name, type_, format_, doc, priority in _definitions(kind)
    ]


def _partial(obj: Obj) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": _d(obj, "metadata"),
    }


def table_row(
    obj: Obj, kind: str, now: datetime.datetime, *, include_object: str = "Metadata"
) -> dict[str, Any]:
    """One ``Table`` row for ``obj``; ``include_object`` is None, Metadata or Object."""
    cells = _KINDS.get(kind, _DEFAULT)[1]
    row: dict[str, Any] = {"cells": [*cells(obj, now), _cluster(obj)]}
    if kind == "Pod":
        phase = _d(obj, "status").get("phase")
        if phase in ("Succeeded", "Failed"):
            row["conditions"] = [
                {
                    "type": "Completed",
                    "status": "True",
                    "reason": phase,
                    "message": "The pod has completed successfully."
                    if phase == "Succeeded"
                    else "The pod failed.",
                }
            ]
    if include_object == "Object":
        row["object"] = obj
    elif include_object != "None":
        row["object"] = _partial(obj)
    return row


def to_table(
    objs: Sequence[Obj],
    kind: str,
    *,
    resource_version: str = "",
    continue_token: str = "",
    include_object: str = "Metadata",
    with_columns: bool = True,
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` ``Table`` of ``objs`` (column definitions omitted when asked)."""
    now = now or datetime.datetime.now(datetime.UTC)
    meta: dict[str, Any] = {}
    if resource_version:
        meta["resourceVersion"] = resource_version
    if continue_token:
        meta["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": column_definitions(kind) if with_columns else [],
        "rows": [table_row(o, kind, now, include_object=include_object) for o in objs],
    }
