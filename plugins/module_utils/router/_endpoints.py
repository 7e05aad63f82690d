# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The models' ready replicas, from their Services' EndpointSlices, kept
current by a watch with the pod's ServiceAccount token.

The watch is written here on aiohttp (the router's own HTTP library) rather
than on kubernetes.core's client layer: the router's image carries neither
Ansible nor the generated client, and a list and a watch of one kind are
all it needs (list, then watch from its resourceVersion; on 410 Gone, list
again: the API concepts' "Efficient detection of changes")."""

from __future__ import annotations

import asyncio
import json
import os
import ssl

try:
    import aiohttp
except ImportError:  # the router's image has it; the controller never imports this file
    aiohttp = None

SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # set by the EndpointSlice controller on a Service's slices
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
WATCH_S = 300  # the server ends each watch after this; bookmarks keep it busy meanwhile
# A list answers within seconds; a watch sends a bookmark at least every minute or so, so a
# connection silent for longer than the watch itself is dead (a lost peer sends no reset).
LIST_TIMEOUT = {"total": 30}
WATCH_TIMEOUT = {"sock_connect": 10, "sock_read": WATCH_S + 30}


def ready_addresses(slices: list[dict], port_name: str) -> list[str]:
    """``ip:port`` of every ready endpoint of these slices, on the port of
    that name. A ready condition that is absent counts as ready, as the API
    says (discovery.k8s.io/v1 EndpointConditions.ready: "nil should be
    interpreted as true"); a terminating endpoint is not ready."""
    found = set()
    for item in slices:
        if item.get("addressType") not in ("IPv4", "IPv6"):
            continue
        ports = [p.get("port") for p in item.get("ports") or [] if (p.get("name") or "") == port_name and p.get("port")]
        if not ports:
            continue
        for endpoint in item.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            if conditions.get("ready") is False or conditions.get("terminating") is True:
                continue
            for ip in endpoint.get("addresses") or []:
                host = f"[{ip}]" if ":" in ip else ip
                found.update(f"{host}:{port}" for port in ports)
    return sorted(found)


class Cluster:
    """The API server as the pod sees it: KUBERNETES_SERVICE_HOST/PORT, the
    token and the CA the kubelet mounts (the token is read again for every
    request: the kubelet renews the file before it expires)."""

    def __init__(self, service_account_dir: str = SERVICE_ACCOUNT_DIR, environ=None):
        environ = os.environ if environ is None else environ
        host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise RuntimeError("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: the router runs in a "
                               "pod of the cluster whose models it routes to")
        self.base = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        self.token_file = os.path.join(service_account_dir, "token")
        for path in (self.token_file, os.path.join(service_account_dir, "ca.crt")):
            if not os.path.isfile(path):
                raise RuntimeError(f"{path} is not there: the pod's ServiceAccount token is not mounted "
                                   "(automountServiceAccountToken), or --service-account-dir names another folder")
        self.ssl = ssl.create_default_context(cafile=os.path.join(service_account_dir, "ca.crt"))

    def headers(self) -> dict:
        with open(self.token_file, encoding="utf-8") as f:
            return {"Authorization": f"Bearer {f.read().strip()}", "Accept": "application/json"}


async def watch_slices(session, cluster: Cluster, namespace: str, services: list[str], on_change, log,
                       stop: asyncio.Event) -> None:
    """Call ``on_change({service: [slice, ...]})`` with every Service's
    current slices, after the first list and after every change, until
    ``stop`` is set. A broken connection is listed again after a back-off
    (1 s doubling to 30 s); the replicas last seen stay in use meanwhile."""
    path = f"{cluster.base}/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
    selector = f"{SERVICE_NAME_LABEL} in ({','.join(sorted(services))})"
    delay = 1.0
    while not stop.is_set():
        slices: dict[str, dict] = {}
        try:
            async with session.get(path, params={"labelSelector": selector}, headers=cluster.headers(),
                                   ssl=cluster.ssl, timeout=aiohttp.ClientTimeout(**LIST_TIMEOUT)) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"listing EndpointSlices in {namespace}: HTTP {resp.status} "
                                       f"{(await resp.text())[:200]}")
                listed = await resp.json()
            for item in listed.get("items") or []:
                slices[item["metadata"]["uid"]] = item
            version = listed["metadata"]["resourceVersion"]
            on_change(_by_service(slices))
            delay = 1.0
            params = {"labelSelector": selector, "watch": "1", "resourceVersion": version,
                      "allowWatchBookmarks": "true", "timeoutSeconds": str(WATCH_S)}
            async with session.get(path, params=params, headers=cluster.headers(), ssl=cluster.ssl,
                                   timeout=aiohttp.ClientTimeout(**WATCH_TIMEOUT)) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"watching EndpointSlices in {namespace}: HTTP {resp.status}")
                async for line in resp.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":  # 410 Gone (the version is too old) or another: list again, after the back-off
                        raise RuntimeError(f"the watch ended with {(obj.get('code') or '')} {obj.get('reason') or ''}: "
                                           f"{obj.get('message') or ''}")
                    if kind == "BOOKMARK":
                        continue
                    if kind == "DELETED":
                        slices.pop(obj["metadata"]["uid"], None)
                    else:
                        slices[obj["metadata"]["uid"]] = obj
                    on_change(_by_service(slices))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure means: list again, keep what was seen
            log(f"endpoints: {exc}; listing again in {delay:.0f}s")
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except asyncio.TimeoutError:
                pass
            delay = min(30.0, delay * 2)


def _by_service(slices: dict[str, dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for item in slices.values():
        service = ((item.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
        if service:
            grouped.setdefault(service, []).append(item)
    return grouped
