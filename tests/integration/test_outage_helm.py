"""etcd stopped for 10 s while the hami role's Helm install runs (the fault
is injected at that task, and timed). The API server holds Helm's requests
while etcd is away and answers them when it is back, so the install ends
after the outage, and the run succeeds (were it to fail, the helm task
retries what passes); a rerun changes nothing."""

from __future__ import annotations

import time

import pytest
import yaml

from support.ansible import ROOT, recap_of as recap, run_playbook_streaming as run
from support.sandbox import Outage

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("nodes_put_back")]
# etcd is stopped as the task before the install starts (it reads no API), so
# that Helm's requests are all made while etcd is away, however fast Helm is.
FAULT_AT = "TASK [inferops.vllm.hami : The chart's values, in the layout of the release installed]"


def test_helm_install_through_an_etcd_outage_then_a_rerun_converges(sandbox, namespace, kube, tmp_path):
    for node in sandbox.gpu_nodes:  # what the gpu_node role puts on them
        kube.patch(f"/api/v1/nodes/{node}", body={"metadata": {"labels": {"gpu": "on"}}})
    playbook = tmp_path / "hami.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        "module_defaults": {g: {"kubeconfig": sandbox.kubeconfig} for g in
                            ("group/inferops.vllm.k8s", "group/kubernetes.core.k8s", "group/kubernetes.core.helm")},
        "vars": {"hami_chart_ref": str(ROOT / "tests" / "charts" / "hami-2.10"), "hami_release_name": "hami-etcd",
                 "hami_namespace": namespace, "hami_helm_binary": sandbox.helm, "hami_node_label": {"gpu": "on"},
                 "hami_wait_timeout": 120},
        "roles": [{"role": "inferops.vllm.hami"}],
    }]))
    install: dict = {}

    with Outage("etcd", 10, FAULT_AT) as fault:
        def on_line(line: str):
            if install.get("started") and "done_at" not in install and line.startswith(("ok:", "changed:", "fatal:")):
                install["done_at"] = time.monotonic()
            if line.startswith("TASK [inferops.vllm.hami : Install or upgrade HAMi]"):
                install["started"] = True
            fault.on_line(line)

        rc, output = run(playbook, on_line)
    assert fault.happened
    # The install was caught by the outage: it ended only once etcd was back.
    assert install["done_at"] > fault.back_at, output[-3000:]
    assert rc == 0, output[-4000:]
    assert kube.get("apps/v1", "DaemonSet", namespace, "hami-etcd-device-plugin")["status"].get("numberReady") == \
        len(sandbox.gpu_nodes)
    again_rc, again = run(playbook)
    assert again_rc == 0 and recap(again)["changed"] == 0, again[-4000:]
