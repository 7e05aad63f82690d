"""Credentials stay out of every output: a kubeconfig given as a dict, and
the Secrets the roles write (no copy in annotations, nothing echoed when the
API server refuses a change). Only booleans are asserted, so a failing test
does not print the secret it found."""

from __future__ import annotations

import base64
import sys
import time
from pathlib import Path

import pytest
import yaml

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ClusterError
from support.ansible import run_playbook_text
from support.k8s import status_of

pytestmark = pytest.mark.integration
# Run on this machine with the test's Python (the one with the libraries).
LOCAL = ("-c", "local", "-e", f"ansible_python_interpreter={sys.executable}")


def dict_kubeconfig(sandbox) -> tuple[dict, list[str]]:
    """The sandbox's kubeconfig with its credentials inline (as a user would
    paste it into a vault), plus a second user holding a token and an exec
    plugin's secret env; returns it and the secret strings it carries."""
    cfg = yaml.safe_load(Path(sandbox.kubeconfig).read_text())
    user = cfg["users"][0]["user"]
    cert = Path(user.pop("client-certificate")).read_bytes()
    key = Path(user.pop("client-key")).read_bytes()
    cluster = cfg["clusters"][0]["cluster"]
    cluster["certificate-authority-data"] = base64.b64encode(Path(cluster.pop("certificate-authority")).read_bytes()).decode()
    user["client-certificate-data"] = base64.b64encode(cert).decode()
    user["client-key-data"] = base64.b64encode(key).decode()
    token, exec_secret = "tok-" + "q" * 40, "exec-" + "z" * 30
    cfg["users"].append({"name": "robot", "user": {"token": token, "exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": "get-token",
        "env": [{"name": "SECRET", "value": exec_secret}], "interactiveMode": "Never"}}})
    key_lines = [line for line in key.decode().splitlines() if line and "-----" not in line]
    return cfg, [user["client-key-data"], token, exec_secret, *key_lines]


def play_file(tmp_path, tasks: list[dict]) -> Path:
    path = tmp_path / "play.yml"
    path.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    return path


def test_dict_kubeconfig_credentials_never_shown_at_vvvv(sandbox, tmp_path):
    kubeconfig, secrets = dict_kubeconfig(sandbox)
    node = sandbox.gpu_nodes[0]
    play = play_file(tmp_path, [
        # Works with the dict: reads the node, changes nothing.
        {"name": "read", "inferops.vllm.gpu_node": {"kubeconfig": kubeconfig, "names": [node], "labels": {}}},
        # Fails in argument validation, before the module's own code runs.
        {"name": "bad", "inferops.vllm.workload_wait": {"kubeconfig": kubeconfig, "kind": "StatefulSet",
                                                        "name": "x", "namespace": "default", "timeout": "soon"},
         "ignore_errors": True},
        # Fails on the cluster side: the object does not exist.
        {"name": "missing", "inferops.vllm.workload_wait": {"kubeconfig": kubeconfig, "kind": "StatefulSet",
                                                            "name": "nope", "namespace": "no-such-ns",
                                                            "timeout": 1}, "ignore_errors": True},
    ])
    # ansible-core 2.21 leaves the module's arguments (its result's
    # `invocation`) out unless asked; ask, so they are shown as a user
    # debugging with them would see them.
    run = run_playbook_text(play, "localhost,", "-vvvv", *LOCAL, env={"ANSIBLE_INJECT_INVOCATION": "true"})
    assert run.recap["ok"] == 3 and run.recap["failed"] == 0, run.output[-3000:]
    assert run.output.count("...ignoring") == 2, run.output[-3000:]  # both failures happened
    leaked = [i for i, s in enumerate(secrets) if s in run.output]
    assert leaked == [], f"credential strings {leaked} (indexes) of the dict kubeconfig are in the -vvvv output"
    # Only the credentials are hidden: the rest of the kubeconfig stays readable.
    assert kubeconfig["clusters"][0]["cluster"]["server"] in run.output
    assert '"kind": "Config"' in run.output or "'kind': 'Config'" in run.output


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
ACCESS, SECRET = "AKIA" + "R" * 16, "s3cr3t-" + "x" * 33


def secret_task(namespace: str, data: dict, **extra) -> dict:
    args = {"name": "creds", "namespace": namespace, "data": data, **extra}
    return {"name": "creds", "inferops.vllm.k8s_secret": args, "no_log": True}


def forms(*values: str) -> list[str]:
    out = []
    for v in values:
        b64 = base64.b64encode(v.encode()).decode()
        out += [v, b64, base64.b64encode(b64.encode()).decode()]
    return out


def test_k8s_secret_leaves_no_copy_and_removes_an_old_one(sandbox, namespace, kube, tmp_path):
    """A Secret first written by client-side apply (kubernetes.core.k8s
    apply: true, as the roles did before) carries its data in the
    last-applied annotation; k8s_secret removes that copy, and writes none."""
    first = play_file(tmp_path, [{"name": "old way", "kubernetes.core.k8s": {
        "apply": True, "definition": {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                      # The roles' own Secret (their label), as they wrote it then.
                                      "metadata": {"name": "creds", "namespace": namespace,
                                                   "labels": {"app.kubernetes.io/managed-by": "inferops.vllm"}},
                                      "stringData": {"AWS_SECRET_ACCESS_KEY": SECRET}}}, "no_log": True}])
    env = {"K8S_AUTH_KUBECONFIG": sandbox.kubeconfig}
    assert run_playbook_text(first, "localhost,", *LOCAL, env=env).recap["failed"] == 0
    before = kube.get("v1", "Secret", namespace, "creds")
    assert SECRET in before["metadata"]["annotations"][LAST_APPLIED]  # the copy this fixes

    play = play_file(tmp_path, [secret_task(namespace, {"AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET})])
    run = run_playbook_text(play, "localhost,", *LOCAL, "-vvvv", "--diff", env=env)
    assert run.recap["failed"] == 0 and run.recap["changed"] == 1, run.output[-2000:]
    after = kube.get("v1", "Secret", namespace, "creds")
    assert LAST_APPLIED not in (after["metadata"].get("annotations") or {})
    assert sorted(after["data"]) == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    assert base64.b64decode(after["data"]["AWS_SECRET_ACCESS_KEY"]).decode() == SECRET
    text = json_dump(after)
    assert not any(f in json_dump(after["metadata"]) for f in forms(SECRET, ACCESS)), "a value in metadata"
    assert SECRET not in text  # data holds base64 only
    assert not any(f in run.output for f in forms(SECRET, ACCESS)), "a value in the -vvvv --diff output"

    again = run_playbook_text(play, "localhost,", *LOCAL, env=env)
    assert again.recap["changed"] == 0 and again.recap["failed"] == 0


def test_a_secret_someone_else_made_is_refused_and_left_as_it_is(sandbox, namespace, kube, tmp_path):
    """k8s_secret writes only Secrets the collection created (its label):
    another of the same name is refused, naming it and who wrote it, and
    stays exactly as it was; with foreign=read it is used as it is."""
    kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": namespace},
                 "data": {"THEIRS": base64.b64encode(SECRET.encode()).decode()}})
    before = kube.get("v1", "Secret", namespace, "creds")
    env = {"K8S_AUTH_KUBECONFIG": sandbox.kubeconfig}
    play = play_file(tmp_path, [secret_task(namespace, {"AWS_ACCESS_KEY_ID": ACCESS})])
    run = run_playbook_text(play, "localhost,", *LOCAL, env=env)
    assert run.recap["failed"] == 1, run.output[-2000:]
    assert f"Secret {namespace}/creds exists and was not created by inferops.vllm" in run.output, run.output[-2000:]
    assert "written by" in run.output
    assert not any(f in run.output for f in forms(SECRET, ACCESS)), "a value in the failure output"
    after = kube.get("v1", "Secret", namespace, "creds")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]

    read = play_file(tmp_path, [secret_task(namespace, {}, generate=["THEIRS"], foreign="read")])
    used = run_playbook_text(read, "localhost,", *LOCAL, env=env)
    assert used.recap["failed"] == 0 and used.recap["changed"] == 0, used.output[-2000:]
    absent = play_file(tmp_path, [secret_task(namespace, {}, state="absent", foreign="read")])
    left = run_playbook_text(absent, "localhost,", *LOCAL, env=env)
    assert left.recap["failed"] == 0 and left.recap["changed"] == 0, left.output[-2000:]
    assert kube.get("v1", "Secret", namespace, "creds")["metadata"]["resourceVersion"] == \
        before["metadata"]["resourceVersion"]


def json_dump(obj) -> str:
    import json

    return json.dumps(obj, default=str)


def test_refused_change_echoing_the_data_shows_no_value(sandbox, namespace, kube, tmp_path):
    """An admission policy that refuses the Secret and echoes its data in
    the message (as policy engines' messages may): ansible-core prints a
    module's failure message even under no_log, so the module masks every
    value, plain and base64, in what it returns."""
    policy = f"echo-secret-{namespace}"
    admission = "admissionregistration.k8s.io/v1"
    kube.create({
        "apiVersion": admission, "kind": "ValidatingAdmissionPolicy", "metadata": {"name": policy},
        "spec": {"failurePolicy": "Fail",
                 "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                         "operations": ["CREATE", "UPDATE"],
                                                         "resources": ["secrets"]}]},
                 "validations": [{"expression": "false",
                                  "messageExpression": "'refused: data=' + string(object.data.AWS_SECRET_ACCESS_KEY)"
                                                       " + ' key=' + string(object.data.AWS_ACCESS_KEY_ID)"}]}})
    kube.create({
        "apiVersion": admission, "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": policy},
        "spec": {"policyName": policy, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {
                     "kubernetes.io/metadata.name": namespace}}}}})
    try:
        play = play_file(tmp_path, [secret_task(namespace, {"AWS_ACCESS_KEY_ID": ACCESS,
                                                            "AWS_SECRET_ACCESS_KEY": SECRET})])
        env = {"K8S_AUTH_KUBECONFIG": sandbox.kubeconfig}
        await_policy_in_force(kube, namespace)
        run = run_playbook_text(play, "localhost,", *LOCAL, env=env)
        assert run.recap["failed"] == 1, run.output[-2000:]
        assert "refused: data=" in run.output  # the policy's message is shown, masked
        assert not any(f in run.output for f in forms(SECRET, ACCESS)), "a value in the failure output"
    finally:
        kube.delete(admission, "ValidatingAdmissionPolicyBinding", None, policy, missing_ok=True)
        kube.delete(admission, "ValidatingAdmissionPolicy", None, policy, missing_ok=True)


def await_policy_in_force(kube, namespace: str, timeout: float = 60.0) -> None:
    """Until the API server's admission enforces the policy just created.

    No object says so: the policy's status (type checking, by the
    controller-manager) is not the API server's admission informers having
    loaded it and its binding, which happens a moment later. So ask the
    API server itself: a server-side dry run of a Secret in the namespace
    (validated and admitted, never stored) until it is refused by this
    policy. Each try is one round trip to the server, no sleep between; the
    tries are bounded by the timeout."""
    probe = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "policy-probe", "namespace": namespace},
             "data": {"AWS_SECRET_ACCESS_KEY": "cHJvYmU=", "AWS_ACCESS_KEY_ID": "cHJvYmU="}}
    deadline = time.monotonic() + timeout
    tries = 0
    while True:
        tries += 1
        try:
            kube.create(probe, dry_run=True)
        except ClusterError as exc:
            # Refused by this policy (its message), not anything else.
            assert status_of(exc) in (403, 422) and "refused: data=" in exc.msg, exc.msg
            return
        assert time.monotonic() < deadline, f"the policy was not enforced within {timeout}s ({tries} dry runs)"
