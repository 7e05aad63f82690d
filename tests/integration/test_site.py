"""site.yml on the sandbox inventory, as `make sandbox` runs it: every stage
end to end, then a second run that changes nothing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from support.ansible import ROOT, run_playbook, run_playbook_text

# What site.yml adds to the shared sandbox (gpu=on, the HAMi release, ai-serving) is taken away after.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("site_put_back")]


def site(sandbox, *extra: str):
    return run_playbook(ROOT / "site.yml", inventory=ROOT / "inventories" / "sandbox",
                        env={"SANDBOX_DIR": str(sandbox.state_dir)}, extra_args=list(extra))


def test_site_end_to_end_then_no_change(sandbox, kube):
    first = site(sandbox)
    assert first.rc == 0 and first.failed() == 0, first.failures()
    assert first.changed() > 0

    report = first.task("Report the cluster and its GPU nodes")["msg"]
    assert report[0] == f"Kubernetes {sandbox.kubernetes_version}"  # what the sandbox runs (state.json)
    # GPU nodes labelled for HAMi, and HAMi's device plugin on every one of them.
    for name in sandbox.gpu_nodes:
        assert kube.get(f"/api/v1/nodes/{name}")["metadata"]["labels"]["gpu"] == "on"
    assert "gpu" not in (kube.get(f"/api/v1/nodes/{sandbox.cpu_nodes[0]}")["metadata"].get("labels") or {})
    plugin = kube.get("apps/v1", "DaemonSet", "kube-system", "hami-device-plugin")
    assert plugin["status"].get("numberReady") == len(sandbox.gpu_nodes)
    assert kube.get("apps/v1", "Deployment", "kube-system", "hami-scheduler")["status"].get("readyReplicas") == 1
    # The nodes were registered in both of HAMi's formats (2.7's text, JSON from 2.8), and the verify read them all.
    registers = [kube.get(f"/api/v1/nodes/{n}")["metadata"]["annotations"]["hami.io/node-nvidia-register"]
                 for n in sandbox.gpu_nodes]
    assert {r.startswith("[") for r in registers} == {True, False}
    verified = first.task("inferops.vllm.hami : Read the labelled nodes' GPU registration")["nodes"]
    assert sorted(n["name"] for n in verified if n["hami"]["registered"] and len(n["hami"]["devices"]) == 8) \
        == sorted(sandbox.gpu_nodes)
    # The model claim bound, and the model fetched from S3 into the volume behind it.
    claim = kube.get("v1", "PersistentVolumeClaim", "ai-serving", "models-tiny-chat")
    assert claim["status"].get("phase") == "Bound"
    volume = kube.get("v1", "PersistentVolume", None, claim["spec"]["volumeName"])
    model_dir = Path(volume["spec"]["hostPath"]["path"]) / "tiny-chat"
    marker = json.loads((model_dir / ".inferops-model-complete.json").read_text())
    assert "model.safetensors" in {f["path"] for f in marker["files"]}
    # vLLM (the stand-in behind kwok) answered through the Kubernetes API.
    answer = first.task("inferops.vllm.vllm_serve : Ask the server, as a client would")
    assert answer["models"]["ids"] == ["tiny-chat"] and answer["chat"]["reply"] == "ready"
    assert answer["stream"]["chunks"] > 0 and answer["unauthenticated"]
    # The verify stage does not ask the same Service the same again: it reports the serve stage's answer.
    assert first.task("Health, model list, a chat completion and a streamed one").get("skipped") is True
    assert first.task("Report")["msg"][:2] == ["asked by the serve stage of this run", "tiny-chat answered: ready"]
    assert kube.get("apps/v1", "StatefulSet", "ai-serving", "vllm")["status"].get("readyReplicas") == 1

    # Again, at the highest verbosity with the default output, as an operator
    # debugging it would run it: nothing changes, and neither key shows.
    second = run_playbook_text(ROOT / "site.yml", ROOT / "inventories" / "sandbox", "-vvvv",
                               env={"SANDBOX_DIR": str(sandbox.state_dir)})
    assert second.rc == 0 and second.recap["failed"] == 0, second.output[-3000:]
    assert second.recap["changed"] == 0, second.changed_tasks
    assert_no_secret_in(second.output, sandbox, kube)

    # One stage alone, as an operator re-runs it: the serve stage finds the
    # model from the claim's volume, and changes nothing either.
    serve = site(sandbox, "--tags", "serve")
    assert serve.rc == 0 and serve.failed() == 0, serve.failures()
    assert serve.changed() == 0
    assert serve.task("inferops.vllm.vllm_serve : Ask the server, as a client would")["chat"]["reply"] == "ready"
    # The verify stage alone asks itself.
    verify = site(sandbox, "--tags", "verify")
    assert verify.rc == 0 and verify.failed() == 0, verify.failures()
    alone = verify.task("Health, model list, a chat completion and a streamed one")
    assert alone["models"]["ids"] == ["tiny-chat"] and alone["stream"]["chunks"] > 0


# The two Secrets whose data holds the keys, as they should (by name: another
# test may have deployed the same model with the same S3 credentials elsewhere).
KEY_HOLDERS = {"vllm-api-key", "tiny-chat-fetch-credentials"}


def every_object(kube) -> list[tuple[str, str]]:
    """(where, JSON) of every object of every kind the API server lists, in
    every namespace (discovery, as kubectl get --all-namespaces would); the
    key-holding Secrets without their data, but with their annotations."""
    found = []
    for kind, namespace, name, obj in kube.every_object():
        if kind == "Secret" and name in KEY_HOLDERS:
            obj = {k: v for k, v in obj.items() if k not in ("data", "stringData")}
        found.append((f"{kind} {namespace}/{name}", json.dumps(obj)))
    return found


def assert_no_secret_in(output: str, sandbox, kube) -> None:
    """Neither the API key nor the S3 secret key, plain or in base64 (as a
    Secret's data), in the output or in any object of the cluster - specs,
    args, annotations (a client-side apply's last-applied copy), events, the
    key Secrets' own annotations - but the two Secrets' data. Only booleans
    are asserted, so a failure does not print the key it found."""
    assert "the output has been hidden" in output  # the tasks that carry the keys ran, censored
    secret = kube.get("v1", "Secret", "ai-serving", "vllm-api-key")
    api_key = base64.b64decode(secret["data"]["api-key"]).decode()
    s3_key = sandbox.s3_credentials()["secret_key"]
    assert len(api_key) >= 32 and len(s3_key) >= 16
    creds = kube.get("v1", "Secret", "ai-serving", "tiny-chat-fetch-credentials")
    assert base64.b64decode(creds["data"]["AWS_SECRET_ACCESS_KEY"]).decode() == s3_key  # where it belongs
    objects = every_object(kube)
    kinds = {where.split()[0] for where, _text in objects}
    assert {"Pod", "StatefulSet", "Job", "Secret", "Event", "Namespace", "ConfigMap"} <= kinds
    for name, value in (("API key", api_key), ("S3 secret key", s3_key)):
        for form in (value, base64.b64encode(value.encode()).decode()):
            leaked = form in output
            assert not leaked, f"the {name} is in ansible-playbook's -vvvv output"
            holders = [where for where, text in objects if form in text]
            assert holders == [], f"the {name} is in {holders}"
