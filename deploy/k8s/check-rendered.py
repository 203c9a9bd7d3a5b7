#!/usr/bin/env python3
"""Checks a rendered overlay (`kubectl kustomize deploy/k8s/overlays/X`) for
what no schema knows: the StatefulSet's replicas against bourse.toml's
[cluster] members, the Services and probes against the container's ports,
Guaranteed QoS, the security context, the disruption budget against the
majority, and the PodMonitor (a CRD kubernetes-validate has no schema for).

Usage: check-rendered.py RENDERED.yaml   (exit 1 and one line per problem)
"""
import sys
import tomllib

import yaml


def one(docs, kind):
    found = [d for d in docs if d.get("kind") == kind]
    if len(found) != 1:
        raise SystemExit(f"want exactly one {kind}, found {len(found)}")
    return found[0]


def check_cluster(sts, toml, problems):
    """[cluster] members: ids 1..=replicas, member N is pod (N-1) by the
    governing Service's name, on the container's raft and client ports."""
    replicas = sts["spec"].get("replicas", 1)
    cluster = toml.get("cluster", {})
    members = cluster.get("members", [])
    name, service = sts["metadata"]["name"], sts["spec"]["serviceName"]
    if not members:
        if replicas != 1:
            problems.append(f"{replicas} replicas but bourse.toml has no [cluster] members")
        return
    if cluster.get("node_id", 0) != 0:
        problems.append("cluster.node_id is fixed: every pod would be the same node; use node_id_from_hostname")
    if cluster.get("node_id_from_hostname") is not True:
        problems.append("cluster.node_id_from_hostname is not true")
    if len(members) != replicas:
        problems.append(f"{replicas} replicas but {len(members)} [cluster] members")
    ports = {p["name"]: p["containerPort"] for p in sts["spec"]["template"]["spec"]["containers"][0]["ports"]}
    listen_port = int(toml["server"]["listen"].rsplit(":", 1)[1])
    raft_port = int(cluster.get("raft_listen", ":0").rsplit(":", 1)[1])
    if (listen_port, raft_port) != (ports.get("quic"), ports.get("raft")):
        problems.append(f"listen/raft ports {listen_port}/{raft_port} are not the container ports {ports}")
    for i, m in enumerate(members):
        want = f"{i + 1}={name}-{i}.{service}:{raft_port}/{name}-{i}.{service}:{listen_port}"
        host = lambda a: a.split(":")[0].split(".")[:2]
        ident, addrs = m.split("=", 1)
        raft, client = addrs.split("/", 1)
        got = (ident, host(raft), raft.rsplit(":", 1)[1], host(client), client.rsplit(":", 1)[1])
        exp = (str(i + 1), [f"{name}-{i}", service], str(raft_port), [f"{name}-{i}", service], str(listen_port))
        if got != exp:
            problems.append(f"members[{i}] is {m!r}; pod {name}-{i} is node {i + 1}: {want!r}")


def check_pod(sts, problems):
    """Guaranteed QoS with whole CPUs, non-root read-only root, probes on
    the metrics port."""
    pod = sts["spec"]["template"]["spec"]
    c = pod["containers"][0]
    res = c.get("resources", {})
    if res.get("requests") != res.get("limits"):
        problems.append("requests differ from limits: not Guaranteed QoS")
    cpu = str(res.get("limits", {}).get("cpu", ""))
    if not cpu.isdigit():
        problems.append(f"cpu {cpu!r} is not a whole number of CPUs (no exclusive cores)")
    sc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    if not (sc.get("runAsNonRoot") and sc.get("runAsUser") == 10001 and sc.get("fsGroup")):
        problems.append("pod securityContext lacks runAsNonRoot / runAsUser 10001 / fsGroup")
    if not csc.get("readOnlyRootFilesystem"):
        problems.append("root filesystem is writable")
    for probe, path in [("livenessProbe", "/health"), ("readinessProbe", None)]:
        get = c.get(probe, {}).get("httpGet", {})
        if get.get("port") != "metrics" or (path and get.get("path") != path):
            problems.append(f"{probe} is not httpGet {path or ''} on the metrics port")
    if not any(t["metadata"]["name"] == "data" for t in sts["spec"].get("volumeClaimTemplates", [])):
        problems.append("no volumeClaimTemplate 'data'")


def check_budget(sts, pdb, problems):
    """A drain never takes a majority: maxUnavailable below half."""
    replicas = sts["spec"].get("replicas", 1)
    mu = pdb["spec"].get("maxUnavailable")
    if not isinstance(mu, int) or (replicas > 1 and mu > (replicas - 1) // 2) or (replicas == 1 and mu != 0):
        problems.append(f"PodDisruptionBudget maxUnavailable {mu!r} with {replicas} replicas")


def check_monitor(sts, docs, problems):
    labels = sts["spec"]["template"]["metadata"]["labels"]
    for d in docs:
        if d.get("kind") != "PodMonitor":
            continue
        if d.get("apiVersion") != "monitoring.coreos.com/v1":
            problems.append(f"PodMonitor apiVersion {d.get('apiVersion')}")
        sel = d["spec"]["selector"].get("matchLabels", {})
        if not sel or any(labels.get(k) != v for k, v in sel.items()):
            problems.append(f"PodMonitor selects {sel}, the pods are {labels}")
        ports = [e.get("port") for e in d["spec"].get("podMetricsEndpoints", [])]
        if ports != ["metrics"]:
            problems.append(f"PodMonitor scrapes ports {ports}")


def main(path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    sts = one(docs, "StatefulSet")
    toml = tomllib.loads(one(docs, "ConfigMap")["data"]["bourse.toml"])
    problems = []
    check_cluster(sts, toml, problems)
    check_pod(sts, problems)
    check_budget(sts, one(docs, "PodDisruptionBudget"), problems)
    check_monitor(sts, docs, problems)
    for p in problems:
        print(f"{path}: {p}")
    if problems:
        return 1
    print(f"{path}: {sts['spec'].get('replicas', 1)} replica(s) consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
