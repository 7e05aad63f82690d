# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reach a Service's pod through the Kubernetes API, as `kubectl
port-forward` does: a listener on 127.0.0.1 whose every connection becomes a
port-forward stream to the pod (websocket through the API server)."""

from __future__ import annotations

import select
import socket
import threading

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ClusterError, EndpointError, NotFoundError
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import api_client_of, missing_namespace, request_json
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._wait import pod_ready, selector_string


def resolve_service_pod(api, namespace: str, service: str, port: int | str | None, timeout: float = 30.0) -> tuple[str, int]:
    """Pick a Ready pod behind the Service and the pod port its service port maps to."""
    try:
        svc = request_json(api, "GET", f"/api/v1/namespaces/{namespace}/services/{service}", timeout=timeout,
                           action=f"reading service {namespace}/{service}")
    except ClusterError as exc:
        if exc.details.get("status") == 404:
            raise missing_namespace(api, namespace, timeout) or NotFoundError(
                f"service: Service {service!r} does not exist in namespace {namespace!r}") from exc
        raise
    ports = (svc.get("spec") or {}).get("ports") or []
    if not ports:
        raise EndpointError(f"service {namespace}/{service} has no ports")
    if port is None:
        chosen = ports[0]
    else:
        chosen = next((p for p in ports if str(p.get("port")) == str(port) or p.get("name") == str(port)), None)
        if chosen is None:
            listed = [p.get("name") or p.get("port") for p in ports]
            raise EndpointError(f"service_port: {port!r} is not a port of service {namespace}/{service}; it has {listed}")
    selector = selector_string({"matchLabels": (svc.get("spec") or {}).get("selector") or {}})
    if not selector:
        raise EndpointError(f"service {namespace}/{service} has no selector: give url instead")
    pods = request_json(api, "GET", f"/api/v1/namespaces/{namespace}/pods", query=[("labelSelector", selector)],
                        timeout=timeout, action="listing pods").get("items", [])
    ready = sorted((p for p in pods if pod_ready(p)), key=lambda p: p["metadata"]["name"])
    if not ready:
        raise EndpointError(f"service {namespace}/{service} has no Ready pod ({len(pods)} pods match its selector); "
                            "wait for the workload first (inferops.vllm.workload_wait)", reachable=False)
    pod = ready[0]
    target = chosen.get("targetPort", chosen.get("port"))
    if isinstance(target, str) and not target.isdigit():
        for c in (pod.get("spec") or {}).get("containers") or []:
            for cp in c.get("ports") or []:
                if cp.get("name") == target:
                    return pod["metadata"]["name"], int(cp["containerPort"])
        raise EndpointError(f"service {namespace}/{service}: named targetPort {target!r} is on no container of pod "
                            f"{pod['metadata']['name']}")
    return pod["metadata"]["name"], int(target)


def resolve_pod_port(api, namespace: str, pod: str, port: int | str | None, timeout: float = 30.0) -> int:
    """The port of one named pod: a number, a container port's name, or
    (None) the container port named http, else the first one."""
    try:
        obj = request_json(api, "GET", f"/api/v1/namespaces/{namespace}/pods/{pod}", timeout=timeout,
                           action=f"reading pod {namespace}/{pod}")
    except ClusterError as exc:
        if exc.details.get("status") == 404:
            raise missing_namespace(api, namespace, timeout) or NotFoundError(
                f"pod: pod {pod!r} does not exist in namespace {namespace!r}") from exc
        raise
    if not pod_ready(obj):
        raise EndpointError(f"pod {namespace}/{pod} is not Ready; wait for it first (inferops.vllm.workload_wait)",
                            reachable=False)
    if port is not None and str(port).isdigit():
        return int(port)
    declared = [cp for c in (obj.get("spec") or {}).get("containers") or [] for cp in c.get("ports") or []]
    wanted = "http" if port is None else str(port)
    named = next((cp for cp in declared if cp.get("name") == wanted), None)
    if named is None and port is None and declared:
        named = declared[0]
    if named is None:
        listed = [cp.get("name") or cp.get("containerPort") for cp in declared]
        raise EndpointError(f"port: {wanted!r} is not a port of pod {namespace}/{pod}; it declares {listed}"
                            + ("" if declared else " (none: give the port number)"))
    return int(named["containerPort"])


def through_pod(api, namespace: str, pod: str, port: int, ask):
    """``ask(base_url)`` through a port-forward to the pod; a failure says
    what the port-forward reported, if anything."""
    tunnel = PodTunnel(api, namespace, pod, port)
    with tunnel as local_port:
        try:
            return ask(f"http://127.0.0.1:{local_port}")
        except Exception as exc:
            if tunnel.errors and hasattr(exc, "msg"):
                exc.msg += f" ({tunnel.errors[-1]})"
            raise


class PodTunnel:
    """Context manager: ``with PodTunnel(api, ns, pod, port) as local_port``."""

    def __init__(self, api, namespace: str, pod: str, port: int):
        self.api, self.namespace, self.pod, self.port = api, namespace, pod, port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.stop = threading.Event()
        self.errors: list[str] = []

    def __enter__(self) -> int:
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()
        return self.listener.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn = self.listener.accept()[0]
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _open(self):
        """The port-forward stream, opened as kubernetes.stream.portforward
        opens it, without building CoreV1Api for its URL: importing that
        class loads the client's generated models, about half a second of
        every check (the same websocket call, the same auth headers)."""
        from urllib.parse import quote

        from kubernetes.stream.ws_client import portforward_call

        configuration = api_client_of(self.api).configuration
        headers = {setting["key"]: setting["value"] for setting in configuration.auth_settings().values()
                   if setting.get("in") == "header" and setting.get("value")}
        url = f"{configuration.host}/api/v1/namespaces/{quote(self.namespace)}/pods/{quote(self.pod)}/portforward"
        return portforward_call(configuration, "GET", url, query_params=[("ports", str(self.port))], headers=headers)

    def _serve(self, conn: socket.socket) -> None:
        try:
            pf = self._open()
        except Exception as exc:  # noqa: BLE001 - reported by the caller's request failing
            self.errors.append(f"port-forward to pod {self.namespace}/{self.pod}:{self.port} failed: {exc}")
            conn.close()
            return
        remote = pf.socket(self.port)
        remote.setblocking(True)
        try:
            pipes = [conn, remote]
            while not self.stop.is_set():
                readable = select.select(pipes, [], [], 1.0)[0]
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (remote if sock is conn else conn).sendall(data)
        except OSError:
            return
        finally:
            err = pf.error(self.port)
            if err:
                self.errors.append(f"port-forward to pod {self.namespace}/{self.pod}:{self.port}: {err}")
            conn.close()
            # Half-close and drain before closing: a Unix socket closed with
            # unread data resets its peer, and the client library's proxy
            # thread would print that reset as a traceback.
            try:
                remote.shutdown(socket.SHUT_WR)
                remote.settimeout(1.0)
                while remote.recv(65536):
                    pass
            except OSError:
                pass
            remote.close()
            pf.close()
