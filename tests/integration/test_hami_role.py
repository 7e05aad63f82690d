"""The hami role with each chart layout: HAMi 2.7's (nvidianodeSelector) and
2.10's (nvidiaNodeSelector, since 2.8.0), installed, then upgraded from the
2.7-shaped chart to the 2.10-shaped one, each time verified by the role and
read back: the device plugin selects exactly the label the role was given."""

from __future__ import annotations

import sys

import pytest
import yaml

from support.ansible import ROOT, run_playbook

# What site.yml adds to the shared sandbox (gpu=on, the HAMi release, ai-serving) is taken away after.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("site_put_back")]
LABEL = {"nvidia.com/gpu.present": "true"}  # what the sandbox's GPU nodes carry


def install(sandbox, namespace, tmp_path, chart: str, **extra):
    playbook = tmp_path / f"hami-{chart}.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        "module_defaults": {g: {"kubeconfig": sandbox.kubeconfig} for g in
                            ("group/inferops.vllm.k8s", "group/kubernetes.core.k8s", "group/kubernetes.core.helm")},
        "vars": {"hami_chart_ref": str(ROOT / "tests" / "charts" / chart), "hami_release_name": "hami-test",
                 "hami_namespace": namespace, "hami_helm_binary": sandbox.helm, "hami_node_label": LABEL,
                 "hami_wait_timeout": 120, **extra},
        "roles": [{"role": "inferops.vllm.hami"}],
    }]))
    return run_playbook(playbook, inventory="localhost,",
                        extra_args=["-c", "local", "-e", f"ansible_python_interpreter={sys.executable}"])


def test_each_layout_then_the_upgrade(sandbox, namespace, kube, tmp_path):
    for node in sandbox.gpu_nodes:  # what the gpu_node role puts on them
        kube.patch(f"/api/v1/nodes/{node}", body={"metadata": {"labels": {"gpu": "on"}}})
    old = install(sandbox, namespace, tmp_path, "hami-2.7")
    assert old.rc == 0, old.failures()
    assert old.task("inferops.vllm.hami : The chart's values, in the layout of the release installed")[
        "node_selector_key"] == "nvidianodeSelector"
    plugin = kube.get("apps/v1", "DaemonSet", namespace, "hami-test-device-plugin")
    # Helm merges the chart's default {gpu: "on"} with what 2.7 is given, as HAMi 2.7.1's chart does.
    assert plugin["spec"]["template"]["spec"]["nodeSelector"] == {"gpu": "on", **LABEL}
    assert plugin["metadata"]["labels"]["helm.sh/chart"] == "hami-2.7.1"

    new = install(sandbox, namespace, tmp_path, "hami-2.10", hami_node_label={"gpu": "on"})
    assert new.rc == 0, new.failures()
    assert new.changed() > 0
    plugin = kube.get("apps/v1", "DaemonSet", namespace, "hami-test-device-plugin")
    assert plugin["spec"]["template"]["spec"]["nodeSelector"] == {"gpu": "on"}
    assert plugin["metadata"]["labels"]["helm.sh/chart"] == "hami-2.10.0"
    scheduler = kube.get("apps/v1", "Deployment", namespace, "hami-test-scheduler")
    image = scheduler["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(":" + sandbox.kubernetes_version.split("+")[0])  # the cluster's vX.Y.Z

    again = install(sandbox, namespace, tmp_path, "hami-2.10", hami_node_label={"gpu": "on"})
    assert again.rc == 0 and again.changed() == 0, again.failures()


def test_a_value_the_release_ignores_is_refused_before_anything(sandbox, namespace, kube, tmp_path):
    result = install(sandbox, namespace, tmp_path, "hami-2.10",
                     hami_extra_values={"devicePlugin": {"nvidianodeSelector": {"gpu": "on"}}})
    assert result.rc != 0
    assert "use devicePlugin.nvidiaNodeSelector" in result.failures()
    releases = kube.list("apps/v1", "DaemonSet", namespace)
    assert releases == []  # nothing was installed
