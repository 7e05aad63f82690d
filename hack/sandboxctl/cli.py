"""hack/sandbox up|down|status|kubeconfig|nodes|stop|start|restart.

Everything `up` starts is recorded in the state folder's state.json (pids,
command lines, ports, versions) so that `down` stops exactly what `up`
started. The state folder is .sandbox/, or $SANDBOX_DIR."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time

from sandboxctl import ROOT, crds, jobs, kwok, nodes, pki as pki_, processes, settings, storage
from sandboxctl.processes import Launcher, process_alive, terminate
from sandboxctl.state import LOOPBACK, STATE_DIR, SandboxError, load_state, reserve_ports, save_state

PORTS = ("etcd_client", "etcd_peer", "apiserver", "controller_manager", "scheduler", "kwok", "s3", "s3_console",
         *(settings.vllm_port_key(p) for p in settings.STANDIN_PODS))
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "minio", "vllm-standin",
              "job-runner")


def up(args: argparse.Namespace) -> int:
    line = settings.check_line(args.kubernetes)
    state = load_state()
    if state:
        was = settings.line_of(state)
        if was != line:
            raise SandboxError(f"{STATE_DIR} holds a sandbox started with Kubernetes {was}, not {line}: "
                               f"run `hack/sandbox down` first, or give this one another SANDBOX_DIR")
        if state["processes"] and all(process_alive(p["pid"], str(STATE_DIR)) for p in state["processes"]):
            print(f"sandbox already running (Kubernetes {state.get('kubernetes', {}).get('version', line)}); "
                  f"kubeconfig: {state['kubeconfig']}")
            return 0
        print("sandbox state found but some processes are gone; restarting it", file=sys.stderr)
        processes.stop_all(state, keep_data=False)

    fixtures = settings.load_fixtures(args.fixtures)
    images = args.run_image or (os.environ.get("SANDBOX_RUN_IMAGES") or "").replace(",", " ").split() \
        or settings.default_run_images()
    images = list(dict.fromkeys(images + fixtures.get("run_images", [])))
    started = time.monotonic()
    bins = processes.build_binaries(line)
    version = processes.kubernetes_version(bins["kube-apiserver"])
    built = time.monotonic()

    STATE_DIR.mkdir(parents=True, exist_ok=True)
    pki = STATE_DIR / "pki"
    pki_.make_pki(pki)
    kubeconfig = STATE_DIR / "kubeconfig"
    ports = reserve_ports(list(PORTS) + list(fixtures.get("ports", [])))
    s3_creds = {"access_key": "sandbox-" + secrets.token_hex(4), "secret_key": secrets.token_urlsafe(24)}
    creds_file = STATE_DIR / "s3-credentials.json"
    creds_file.write_text(json.dumps(s3_creds))
    creds_file.chmod(0o600)
    pki_.write_kubeconfig(kubeconfig, pki, ports["apiserver"])

    state = {
        "state_dir": str(STATE_DIR),
        "kubeconfig": str(kubeconfig),
        "api_server": f"https://{LOOPBACK}:{ports['apiserver']}",
        "kubernetes": {"line": line, "version": version},
        "ports": ports,
        "binaries": {k: str(v) for k, v in bins.items()},
        "s3": {"endpoint": f"http://{LOOPBACK}:{ports['s3']}", "credentials_file": str(creds_file)},
        "job_runner": {"images": images},
        "pod_cidr": settings.pick_pod_cidr(),
        "fixtures": fixtures.get("file"),
        # Sized for the nodes asked for at up (`nodes` adds to them later).
        "heartbeat": settings.heartbeat(args.gpu_nodes + args.cpu_nodes),
        "gpu_nodes": [],
        "cpu_nodes": [],
        "processes": [],
    }
    state["pod_cidr"], state["pod_route"] = claim_pod_network(state["pod_cidr"])
    save_state(state)
    run = Launcher(state)
    try:
        etcd = run.start(
            "etcd",
            [
                str(bins["etcd"]),
                "--name=sandbox",
                f"--data-dir={STATE_DIR / 'etcd'}",
                f"--listen-client-urls=http://{LOOPBACK}:{ports['etcd_client']}",
                f"--advertise-client-urls=http://{LOOPBACK}:{ports['etcd_client']}",
                f"--listen-peer-urls=http://{LOOPBACK}:{ports['etcd_peer']}",
                f"--initial-advertise-peer-urls=http://{LOOPBACK}:{ports['etcd_peer']}",
                f"--initial-cluster=sandbox=http://{LOOPBACK}:{ports['etcd_peer']}",
                "--auto-compaction-retention=1",
                "--quota-backend-bytes=4294967296",
                # Test data is disposable: skip fsync so 2 cores are not spent on disk waits.
                "--unsafe-no-fsync",
            ],
        )
        run.wait_ready("etcd", etcd, 60)

        apiserver = run.start(
            "kube-apiserver",
            [
                str(bins["kube-apiserver"]),
                f"--etcd-servers=http://{LOOPBACK}:{ports['etcd_client']}",
                f"--bind-address={LOOPBACK}",
                f"--advertise-address={LOOPBACK}",
                f"--secure-port={ports['apiserver']}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                # No kubelet runs, so nothing would keep the kubernetes Service's
                # endpoints current; don't try.
                "--endpoint-reconciler-type=none",
                f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                f"--kubelet-client-certificate={pki / 'admin.crt'}",
                f"--kubelet-client-key={pki / 'admin.key'}",
                "--kubelet-preferred-address-types=InternalIP",
                "--profiling=false",
                # `down` should not wait on clients' watches (a test's informer
                # that was told to stop keeps its stream open until it times
                # out): end them after a short grace.
                "--shutdown-watch-termination-grace-period=2s",
            ],
        )
        run.wait_ready("kube-apiserver", apiserver, 180)

        # HAMi's resources that its scheduler keeps from kube-scheduler (nodes.scheduler_config).
        scheduler_config = STATE_DIR / "kube-scheduler.json"
        scheduler_config.write_text(nodes.scheduler_config(str(kubeconfig)))
        common = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={LOOPBACK}",
            "--leader-elect=false",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
        ]
        started_procs = {
            "kube-controller-manager": run.start("kube-controller-manager", [
                str(bins["kube-controller-manager"]),
                *common,
                f"--secure-port={ports['controller_manager']}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                "--use-service-account-credentials=false",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--cluster-name=sandbox",
                f"--node-monitor-grace-period={state['heartbeat']['node_monitor_grace_s']}s",
            ]),
            "kube-scheduler": run.start("kube-scheduler", [
                str(bins["kube-scheduler"]), *common, f"--secure-port={ports['scheduler']}",
                f"--config={scheduler_config}"]),
        }
        kwok_config = kwok.write_config(state, fixtures, images)
        started_procs["kwok"] = run.start("kwok", [
            str(bins["kwok"]),
            f"--kubeconfig={kubeconfig}",
            f"--config={kwok_config}",
            f"--manage-nodes-with-annotation-selector={nodes.KWOK_ANNOTATION[0]}={nodes.KWOK_ANNOTATION[1]}",
            f"--node-ip={LOOPBACK}",
            f"--node-port={ports['kwok']}",
            f"--server-address={LOOPBACK}:{ports['kwok']}",
            f"--tls-cert-file={pki / 'kwok.crt'}",
            f"--tls-private-key-file={pki / 'kwok.key'}",
            # Pod IPs from the sandbox's own network (settings.pick_pod_cidr), from its second address up:
            # kwok v0.8.0 starts its pool after the address given (pkg/kwok/controllers/utils.go).
            f"--cidr={first_pod_address(state['pod_cidr'])}",
            f"--node-lease-duration-seconds={state['heartbeat']['node_lease_s']}",
        ])
        started_procs["minio"] = run.start("minio", [
            str(bins["minio"]),
            "server",
            "--quiet",
            f"--address={LOOPBACK}:{ports['s3']}",
            f"--console-address={LOOPBACK}:{ports['s3_console']}",
            str(STATE_DIR / "s3-data"),
        ], env=processes.minio_env(s3_creds))
        started_procs["vllm-standin"] = run.start("vllm-standin", [
            sys.executable, str(ROOT / "hack" / "openai_standin.py"), f"--kubeconfig={kubeconfig}",
            *[f"--pod={p}={ports[settings.vllm_port_key(p)]}" for p in settings.STANDIN_PODS]])
        # Started last, stopped first: what it runs goes before the cluster does.
        started_procs["job-runner"] = run.start("job-runner", [
            sys.executable, str(ROOT / "hack" / "sandboxctl"), "job-runner", f"--kubeconfig={kubeconfig}",
            f"--state-dir={STATE_DIR}", *[f"--image={i}" for i in images]])
        for name, proc in started_procs.items():
            run.wait_ready(name, proc, 120)

        nodes.add_nodes(state, args.gpu_nodes, args.gpus_per_node, args.gpu_memory_mib, args.gpu_product,
                        args.cpu_nodes)
        storage.create_storage(state)
        storage.seed_model(state, s3_creds)
        nodes.wait_default_service_account(kubeconfig, 120)
    except BaseException:
        processes.stop_all(state, keep_data=False, quiet=True)
        raise
    state["timings"] = {"build_s": round(built - started, 1), "start_s": round(time.monotonic() - built, 1)}
    save_state(state)
    print(
        f"sandbox up in {time.monotonic() - started:.1f}s (build/check {built - started:.1f}s, "
        f"start {time.monotonic() - built:.1f}s): Kubernetes {version}, "
        f"{len(state['gpu_nodes'])} GPU nodes, {len(state['cpu_nodes'])} CPU nodes\n"
        f"kubeconfig: {kubeconfig}"
    )
    return 0


def _component(state: dict | None, name: str) -> dict:
    if not state:
        raise SandboxError("sandbox is not running: run `hack/sandbox up`")
    entry = next((p for p in state["processes"] if p["name"] == name), None)
    if entry is None:
        raise SandboxError(f"no component {name!r}; the sandbox runs {[p['name'] for p in state['processes']]}")
    if "argv" not in entry:
        raise SandboxError("this sandbox was started by an older hack/sandbox that did not record command lines; "
                           "run `hack/sandbox down` and `hack/sandbox up`")
    return entry


def stop_component(args: argparse.Namespace) -> int:
    """Stop one component, leaving the rest running (to test what clients do
    when, say, the S3 server dies mid-download)."""
    state = load_state()
    entry = _component(state, args.component)
    if process_alive(entry["pid"], state["state_dir"]):
        terminate(entry["pid"])
    print(f"stopped {entry['name']}")
    return 0


def start_component(args: argparse.Namespace) -> int:
    """Start a stopped component again with its recorded command line."""
    state = load_state()
    entry = _component(state, args.component)
    if process_alive(entry["pid"], state["state_dir"]):
        print(f"{entry['name']} already runs (pid {entry['pid']})")
        return 0
    run = Launcher(state)
    proc = run.start(entry["name"], entry["argv"], processes.component_env(state, entry["name"]))
    run.wait_ready(entry["name"], proc, 180)
    print(f"started {entry['name']} (pid {proc.pid})")
    return 0


def restart(args: argparse.Namespace) -> int:
    stop_component(args)
    return start_component(args)


def first_pod_address(cidr: str) -> str:
    import ipaddress

    network = ipaddress.ip_network(cidr)
    return f"{network.network_address + 1}/{network.prefixlen}"


def add_pod_route(cidr: str):
    """Make the pod network local to this machine, as 127.0.0.0/8 is, so
    that a pod's IP answers here (the stand-in listens on its pods' IPs) and
    the router reaches the replicas by the IPs in their EndpointSlices. True,
    or why not (it needs CAP_NET_ADMIN: root; `make test` as root, as CI
    runs it, has it)."""
    try:
        proc = subprocess.run(["ip", "route", "add", "local", cidr, "dev", "lo", "table", "local"],
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"ip route add local {cidr}: {exc} (iproute2's ip is needed)"
    return True if proc.returncode == 0 else f"ip route add local {cidr}: {proc.stderr.strip() or proc.returncode}"


def claim_pod_network(first: str) -> tuple[str, object]:
    """The pod network and its route: another /20 when a sandbox starting at
    the same moment took this one first (its route exists now)."""
    import ipaddress

    cidr, taken = first, []
    for _attempt in range(8):
        route = add_pod_route(cidr)
        if route is True or "File exists" not in str(route):
            return cidr, route
        taken.append(ipaddress.ip_network(cidr))
        cidr = settings.pick_pod_cidr(settings.routed_networks() + taken)
    return cidr, route


def delete_pod_route(cidr: str) -> None:
    try:
        subprocess.run(["ip", "route", "del", "local", cidr, "dev", "lo", "table", "local"], capture_output=True,
                       timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        pass  # up could not have added it either


def down(args: argparse.Namespace) -> int:
    state = load_state()
    if not state:
        print("no sandbox state; nothing to stop")
        return 0
    processes.stop_all(state, keep_data=args.keep)
    if state.get("pod_route") is True:
        delete_pod_route(state["pod_cidr"])
    print("sandbox down" + (f"; state kept in {STATE_DIR}" if args.keep else ""))
    return 0


def status(args: argparse.Namespace) -> int:
    state = load_state()
    if not state:
        print("sandbox: not running")
        return 3
    alive = {p["name"]: process_alive(p["pid"], state["state_dir"]) for p in state["processes"]}
    for p in state["processes"]:
        print(f"{p['name']:<24} pid {p['pid']:<8} {'running' if alive[p['name']] else 'STOPPED'}")
    k8s = state.get("kubernetes") or {"line": settings.line_of(state), "version": "?"}
    print(f"kubernetes: {k8s['version']} (line {k8s['line']})")
    print(f"api server: {state['api_server']}")
    print(f"s3 endpoint: {state['s3']['endpoint']}")
    if state.get("pod_cidr"):
        routed = state.get("pod_route") is True
        print(f"pod network: {state['pod_cidr']}" + ("" if routed else f" (not local here: {state.get('pod_route')})"))
    print(f"nodes: {len(state['gpu_nodes'])} GPU, {len(state['cpu_nodes'])} CPU")
    print(f"job runner images: {', '.join((state.get('job_runner') or {}).get('images') or []) or '(none)'}")
    if state.get("fixtures"):
        print(f"fixtures: {state['fixtures']}")
    print(f"kubeconfig: {state['kubeconfig']}")
    if args.json:
        print(json.dumps(state))
    return 0 if alive and all(alive.values()) else 1


def kubeconfig(args: argparse.Namespace) -> int:
    state = load_state()
    if not state:
        print("sandbox is not running: run `hack/sandbox up`", file=sys.stderr)
        return 1
    print(state["kubeconfig"])
    return 0


def add_nodes(args: argparse.Namespace) -> int:
    state = load_state()
    if not state:
        print("sandbox is not running: run `hack/sandbox up`", file=sys.stderr)
        return 1
    nodes.add_nodes(state, args.gpu_nodes, args.gpus_per_node, args.gpu_memory_mib, args.gpu_product, args.cpu_nodes)
    print(f"nodes: {len(state['gpu_nodes'])} GPU, {len(state['cpu_nodes'])} CPU")
    return 0


def install_crds(args: argparse.Namespace) -> int:
    state = load_state()
    if not state:
        print("sandbox is not running: run `hack/sandbox up`", file=sys.stderr)
        return 1
    from sandboxctl.state import api_client

    made = crds.install(api_client(state["kubeconfig"]), args.sets)
    print("CRDs established: " + ", ".join(made))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["job-runner"]:  # the process `up` starts, not a verb for people
        return jobs.main(argv[1:])
    parser = argparse.ArgumentParser(prog="hack/sandbox", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True)
    env = os.environ.get

    def shape(p: argparse.ArgumentParser, gpu_default: int, cpu_default: int) -> None:
        p.add_argument("--gpu-nodes", type=int, default=int(env("SANDBOX_GPU_NODES", gpu_default)))
        p.add_argument("--gpus-per-node", type=int,
                       default=int(env("SANDBOX_GPUS_PER_NODE", nodes.DEFAULT_GPUS_PER_NODE)))
        p.add_argument("--gpu-memory-mib", type=int,
                       default=int(env("SANDBOX_GPU_MEMORY_MIB", nodes.DEFAULT_GPU_MEMORY_MIB)))
        p.add_argument("--gpu-product", default=env("SANDBOX_GPU_PRODUCT", nodes.DEFAULT_GPU_PRODUCT))
        p.add_argument("--cpu-nodes", type=int, default=int(env("SANDBOX_CPU_NODES", cpu_default)))

    p_up = sub.add_parser("up", help="build if needed, start, wait until nodes are Ready")
    shape(p_up, nodes.DEFAULT_GPU_NODES, nodes.DEFAULT_CPU_NODES)
    p_up.add_argument("--kubernetes", choices=settings.KUBERNETES_LINES,
                      default=env("SANDBOX_KUBERNETES") or settings.DEFAULT_KUBERNETES,
                      help="the Kubernetes line (default $SANDBOX_KUBERNETES, else %(default)s); "
                           "a state folder keeps the line it was started with")
    p_up.add_argument("--fixtures", default=env("SANDBOX_FIXTURES") or None, metavar="FILE",
                      help="test-only extras: reserved ports, port-forwards and logs for named pods "
                           "(default $SANDBOX_FIXTURES; tests pass tests/fixtures/sandbox.yml)")
    p_up.add_argument("--run-image", action="append", metavar="IMAGE",
                      help="an image whose pods the job runner runs on this machine (repeatable; default "
                           "$SANDBOX_RUN_IMAGES, else the sandbox inventory's model_store_fetch_image)")
    p_up.set_defaults(func=up)
    p_down = sub.add_parser("down", help="stop every process `up` started and remove its state")
    p_down.add_argument("--keep", action="store_true", help="keep the state folder (logs, etcd data)")
    p_down.set_defaults(func=down)
    p_status = sub.add_parser("status", help="say what runs")
    p_status.add_argument("--json", action="store_true")
    p_status.set_defaults(func=status)
    sub.add_parser("kubeconfig", help="print the kubeconfig path").set_defaults(func=kubeconfig)
    for verb, func, text in (("stop", stop_component, "stop one component"),
                             ("start", start_component, "start a stopped component again"),
                             ("restart", restart, "stop one component and start it again")):
        p_comp = sub.add_parser(verb, help=text)
        p_comp.add_argument("component", help=", ".join(COMPONENTS))
        p_comp.set_defaults(func=func)
    p_nodes = sub.add_parser("nodes", help="add simulated nodes to the running sandbox")
    shape(p_nodes, 0, 0)
    p_nodes.set_defaults(func=add_nodes)
    p_crds = sub.add_parser("crds", help="install third-party CRDs as their projects ship them (pinned Go modules)")
    p_crds.add_argument("sets", nargs="+", metavar="SET", help=", ".join(crds.SETS))
    p_crds.set_defaults(func=install_crds)

    args = parser.parse_args(argv)
    if getattr(args, "gpu_nodes", 0) and not 0 < args.gpus_per_node <= 64:
        parser.error("--gpus-per-node must be between 1 and 64")
    try:
        return args.func(args)
    except SandboxError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
