"""The hami_values module: the role's values in the release's layout, the
user's extra values merged, a value the chart would drop refused."""

from __future__ import annotations

from support.modules import call


def test_values_for_2_10_with_extras_merged(capsys):
    result = call("hami_values", {"chart_version": "2.10.0", "cluster_version": "v1.34.1+k3s1",
                                  "node_label": {"gpu": "on"},
                                  "extra_values": {"devicePlugin": {"deviceSplitCount": 4}}}, capsys)
    assert result.get("failed") is not True, result.get("msg")
    assert result["chart_values"]["devicePlugin"] == {"deviceSplitCount": 4, "nvidiaNodeSelector": {"gpu": "on"}}
    assert result["kube_scheduler_tag"] == "v1.34.1"
    assert result["chart_values"]["scheduler"]["kubeScheduler"]["image"]["tag"] == "v1.34.1"


def test_old_key_refused_for_a_new_chart(capsys):
    result = call("hami_values", {"chart_version": "2.10.0", "cluster_version": "v1.37.2", "node_label": {"gpu": "on"},
                                  "extra_values": {"devicePlugin": {"nvidianodeSelector": {"x": "y"}}}}, capsys)
    assert result["failed"] is True
    assert result["msg"].startswith("extra_values: the chart would ignore devicePlugin.nvidianodeSelector")
