"""What an operator reads when model_store's download fails: the fetcher's
own error (here: an S3 prefix with nothing under it), not only the Job
controller's BackoffLimitExceeded. The sandbox's job runner really runs the
fetcher against the sandbox's S3 server and reports its container's
termination message as the kubelet does (hack/sandboxctl/jobs.py): the
message is the end of the fetcher's output only with the container's
terminationMessagePolicy FallbackToLogsOnError (kubelet v1.37.2,
pkg/kubelet/kuberuntime/kuberuntime_container.go), which the role sets."""

from __future__ import annotations

import pytest

from support.ansible import sandbox_playbook

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_failed_download_says_what_the_fetcher_said(sandbox, namespace):
    run = sandbox_playbook(sandbox, "playbooks/model.yml", namespace, model_store_s3_prefix="no-such-model",
                           model_store_wait_timeout=300)
    assert run.rc != 0
    failed = run.task("inferops.vllm.model_store : Wait for the download Job")
    assert "BackoffLimitExceeded" in failed["msg"]
    assert "container 'model-fetch' of pod fetch-tiny-chat-" in failed["msg"], failed["msg"]
    assert "exited with code 1: the source s3://models/no-such-model" in failed["msg"], failed["msg"]
    assert "lists no files" in failed["msg"], failed["msg"]
    assert sandbox.s3_credentials()["secret_key"] not in failed["msg"]
