"""HAMi's chart layout per release, the kube-scheduler tag the chart derives,
and vLLM tensor parallelism per HAMi release (sources cited in _hami.py)."""

from __future__ import annotations

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.gpu import _hami as hami

ROLE_VALUES = dict(node_label={"gpu": "on"}, resource_name="nvidia.com/gpu", resource_mem="nvidia.com/gpumem",
                   resource_cores="nvidia.com/gpucores", split_count=10, node_policy="binpack", gpu_policy="spread",
                   scheduler_tag="v1.37.2")


@pytest.mark.parametrize("version, key", [
    ("2.7.1", "nvidianodeSelector"), ("v2.7.1", "nvidianodeSelector"), ("2.8.0", "nvidiaNodeSelector"),
    ("2.9.0", "nvidiaNodeSelector"), ("2.10.0", "nvidiaNodeSelector"),
])
def test_node_selector_spelling_per_release(version, key):
    values = hami.chart_values(version, **ROLE_VALUES)
    assert values["devicePlugin"] == {"deviceSplitCount": 10, key: {"gpu": "on"}}
    assert values["scheduler"]["kubeScheduler"] == {"image": {"tag": "v1.37.2"}}


@pytest.mark.parametrize("version, values, expected", [
    ("2.10.0", {"devicePlugin": {"nvidianodeSelector": {"gpu": "on"}}},
     "devicePlugin.nvidianodeSelector is not read by HAMi 2.10.0 (it became devicePlugin.nvidiaNodeSelector in 2.8.0)"),
    ("2.7.1", {"devicePlugin": {"nvidiaNodeSelector": {"gpu": "on"}}}, "devicePlugin.nvidiaNodeSelector is not read by HAMi 2.7.1 (it is read from 2.8.0 on)"),
    ("2.8.3", {"devicePlugin": {"vgpuMonitor": {"resources": {}}}}, "devicePlugin.vgpuMonitor is not read by HAMi 2.8.3"),
    ("2.10.0", {"scheduler": {"kubeScheduler": {"imageTag": "v1.30.0"}}}, "scheduler.kubeScheduler.imageTag is not read"),
    ("2.10.0", {"dra": {"enabled": True}}, "dra is read only by HAMi 2.8.0 to before 2.10.0"),
])
def test_values_the_release_would_drop_are_named(version, values, expected):
    problems = hami.ignored_values(values, version)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_values_the_release_reads_pass():
    assert hami.ignored_values({"devicePlugin": {"nvidiaNodeSelector": {"gpu": "on"}}}, "2.10.0") == []
    assert hami.ignored_values({"devicePlugin": {"nvidianodeSelector": {"gpu": "on"}}}, "2.7.1") == []
    assert hami.ignored_values({"dra": {"enabled": False}}, "2.9.0") == []


@pytest.mark.parametrize("cluster, tag", [
    ("v1.37.2", "v1.37.2"), ("v1.34.1+k3s1", "v1.34.1"), ("v1.31.4-eks-2d5f260", "v1.31.4"), ("1.35.4", "v1.35.4"),
])
def test_kube_scheduler_tag_as_the_chart_derives_it(cluster, tag):
    assert hami.kube_scheduler_tag(cluster) == tag


def test_bad_versions_and_values_name_the_parameter():
    with pytest.raises(ParameterError, match=r"^chart_version \(hami_chart_version\): 'latest'"):
        hami.node_selector_key("latest")
    with pytest.raises(ParameterError, match="^cluster_version: .*hami_kube_scheduler_image_tag"):
        hami.kube_scheduler_tag("unknown")
    with pytest.raises(ParameterError, match=r"^device_split_count \(hami_device_split_count\): 0"):
        hami.chart_values("2.10.0", **{**ROLE_VALUES, "split_count": 0})
    with pytest.raises(ParameterError, match=r"^node_label \(hami_node_label\): empty"):
        hami.chart_values("2.10.0", **{**ROLE_VALUES, "node_label": {}})


@pytest.mark.parametrize("hami_version, vllm, tp, problems, warnings", [
    ("2.7.1", (0, 33, 0), 2, 1, 0),   # fails to launch (fixed in 2.8.1)
    ("2.8.1", (0, 33, 0), 2, 0, 1),   # launches; the TP init fix came with 2.8.3's HAMi-core
    ("2.8.3", (0, 33, 0), 2, 0, 0),
    ("2.10.0", (0, 33, 0), 8, 0, 0),
    ("2.7.1", (0, 17, 1), 2, 0, 0),   # vLLM before 0.18 is not affected
    ("2.7.1", (0, 33, 0), 1, 0, 0),   # one GPU: no tensor parallelism
    ("", (0, 33, 0), 2, 0, 0),        # HAMi's version not known: not checked
])
def test_vllm_tensor_parallel_on_hami(hami_version, vllm, tp, problems, warnings):
    found = hami.vllm_tensor_parallel_findings(hami_version, vllm, tp)
    assert (len(found[0]), len(found[1])) == (problems, warnings), found


CHARTS = __import__("pathlib").Path(__file__).resolve().parents[4] / "charts"


def test_local_chart_version_from_a_folder_and_from_a_helm_package_tarball(tmp_path):
    import tarfile

    assert hami.local_chart_version(str(CHARTS / "hami-2.10")) == "2.10.0"
    assert hami.local_chart_version(str(CHARTS / "hami-2.7")) == "2.7.1"
    # helm package's layout: one top folder holding Chart.yaml (and subcharts deeper down, not read).
    tarball = tmp_path / "hami-2.7.1.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(CHARTS / "hami-2.7", arcname="hami")
    assert hami.local_chart_version(str(tarball)) == "2.7.1"


def test_local_chart_that_is_not_one_names_the_parameter(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "noversion").mkdir()
    (tmp_path / "noversion" / "Chart.yaml").write_text("name: hami\n")
    (tmp_path / "not-a-tarball.tgz").write_bytes(b"plain bytes")
    for path, said in ((tmp_path / "empty", "cannot read a chart"), (tmp_path / "noversion", "has no version"),
                       (tmp_path / "not-a-tarball.tgz", "cannot read a chart"), (tmp_path / "missing", "cannot read")):
        with pytest.raises(ParameterError) as err:
            hami.local_chart_version(str(path))
        assert err.value.msg.startswith("chart_path (hami_chart_ref): ") and said in err.value.msg, err.value.msg
