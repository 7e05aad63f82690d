"""kubeconfig_path: a missing kubeconfig file is refused naming the
variable, the path and the fix; a good one (or several, or a dict) passes
through unchanged."""

from __future__ import annotations

import os

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.vllm.plugins.filter.kubeconfig_path import FilterModule, kubeconfig_path


def test_a_file_passes_unchanged(tmp_path):
    good = tmp_path / "config"
    good.write_text("apiVersion: v1\nkind: Config\n")
    assert kubeconfig_path(str(good)) == str(good)
    other = tmp_path / "other"
    other.write_text("apiVersion: v1\n")
    both = f"{good}{os.pathsep}{other}"
    assert kubeconfig_path(both) == both
    assert kubeconfig_path({"apiVersion": "v1"}) == {"apiVersion": "v1"}
    assert FilterModule().filters()["kubeconfig_path"] is kubeconfig_path


@pytest.mark.parametrize("value, said", [
    ("/nonexistent/kubeconfig", "/nonexistent/kubeconfig does not exist"),
    ("", "not a path"),
    (None, "not a path"),
])
def test_refused_naming_the_variable_the_path_and_the_fix(value, said):
    with pytest.raises(AnsibleFilterError) as refused:
        kubeconfig_path(value)
    msg = str(refused.value)
    assert msg.startswith("inferops_kubeconfig") and said in msg, msg
    assert "-e inferops_kubeconfig=PATH" in msg and "group_vars" in msg, msg


def test_a_folder_and_a_missing_one_of_several(tmp_path):
    with pytest.raises(AnsibleFilterError, match="is not a file"):
        kubeconfig_path(str(tmp_path))
    good = tmp_path / "config"
    good.write_text("apiVersion: v1\n")
    with pytest.raises(AnsibleFilterError, match=f"{tmp_path}/gone does not exist"):
        kubeconfig_path(f"{good}{os.pathsep}{tmp_path}/gone")
    with pytest.raises(AnsibleFilterError, match="^my_kubeconfig: "):
        kubeconfig_path(str(tmp_path / "gone"), name="my_kubeconfig")
