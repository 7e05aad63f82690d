#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: endpoint_check
short_description: Prove that an OpenAI-compatible (vLLM) endpoint answers, the way a user would
version_added: 0.1.0
description:
  - Asks C(GET /health) until it answers 200, retrying with backoff for up to O(startup_timeout) seconds while the
    server starts (connection refused, or 502, 503 or 504); then C(GET /v1/models), which must list O(model); then
    one small C(POST /v1/chat/completions) with the API key, and optionally the same request streamed; or, with
    O(api=embeddings), one C(POST /v1/embeddings) (vLLM serves chat only for generative models and embeddings only
    for pooling ones; the other route answers 404).
  - Reaches the server at O(url), or, given O(service), through the Kubernetes API - a port-forward to a Ready pod
    behind the Service, as C(kubectl port-forward) does - so that no Ingress or node port is needed. Given O(pod),
    the same to that very pod (a rolling upgrade checks each new replica so).
  - A wrong key, a model name the server does not serve, a TLS failure and a refused connection each fail with
    their own message.
  - With a key, it also proves that C(/v1) without the key is refused (a 401), so a server that answers anyone
    fails the check.
options:
  url:
    description:
      - Base URL of the server, without C(/v1), e.g. C(http://vllm.ai-serving.svc:8000).
      - Exactly one of O(url), O(service) and O(pod) is required.
    type: str
  service:
    description: Name of the Service in front of the server; reached through the Kubernetes API.
    type: str
  pod:
    description:
      - Name of one pod to check, reached through the Kubernetes API; it must be Ready.
    type: str
  namespace:
    description: Namespace of O(service) or O(pod), and of O(server_api_key_secret).
    type: str
  service_port:
    description:
      - Port of O(service), by number or name. Default the first.
      - With O(pod), the pod's port by number or container port name. Default the container port named C(http), else
        the first one the pod declares.
    type: str
  model:
    description: The served model name that C(/v1/models) must list and the completion asks for.
    type: str
    required: true
  server_api_key:
    description:
      - The bearer key the server was started with (vLLM reads it from C(VLLM_API_KEY)). Only requests under
        C(/v1) send it.
    type: str
  server_api_key_secret:
    description:
      - Name of the Secret (in O(namespace)) that holds the bearer key, read through the Kubernetes API, so that
        the key never passes through Ansible's variables. Mutually exclusive with O(server_api_key).
    type: str
  server_api_key_secret_key:
    description: The key in O(server_api_key_secret) whose value is the bearer key.
    type: str
    default: api-key
  stream:
    description: Also make one streamed chat completion and time its first token.
    type: bool
    default: false
  api:
    description:
      - What to ask the model for. V(chat) for a generative model, V(embeddings) for a pooling (embedding) model.
      - V(auto) tries chat and, when the server has no chat route (vLLM serving a pooling model), checks embeddings;
        RV(api) says which was checked.
      - The serving_plan module returns which one vLLM will serve the model for (RV(inferops.vllm.serving_plan#module:runner)).
    type: str
    choices: [auto, chat, embeddings]
    default: chat
  prompt:
    description: The user message of the test completion.
    type: str
    default: "Reply with the single word: ready"
  max_tokens:
    description: Most tokens the test completion may generate.
    type: int
    default: 16
  startup_timeout:
    description: Seconds to keep retrying C(/health) while the server starts.
    type: float
    default: 300
  http_timeout:
    description: Seconds to wait for each HTTP request to the server.
    type: float
    default: 60
  server_validate_certs:
    description: Verify the server's TLS certificate for an C(https) O(url).
    type: bool
    default: true
  server_ca_cert:
    description: CA file for the server's certificate.
    type: path
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - inferops.vllm.attributes
  - inferops.vllm.k8s_auth
  - kubernetes.core.k8s_auth_options
  - inferops.vllm.attributes.READ_ONLY
  - inferops.vllm.attributes.ACTION_GROUP_K8S
attributes:
  check_mode:
    details: >-
      It only reads; it runs the same requests in check mode. There, a namespace that does not exist (an earlier task
      only pretended to create it) is reported as not checked, not failed; in a namespace that exists, a Service, pod
      or Secret that does not fails naming it, as outside check mode.
author:
  - inferops.vllm maintainers (@inferops)
"""

EXAMPLES = r"""
- name: Check the service through its Ingress
  inferops.vllm.endpoint_check:
    url: https://llm.example.com
    model: qwen3-235b
    server_api_key: "{{ vllm_api_key }}"
    stream: true

- name: Check it through the Kubernetes API, with no Ingress, with the key from its Secret
  inferops.vllm.endpoint_check:
    service: vllm-qwen3
    namespace: ai-serving
    model: qwen3-235b
    server_api_key_secret: vllm-qwen3-api-key
"""

RETURN = r"""
summary:
  description: What was asked and how fast it answered, a line each, for a person reading the run.
  returned: success
  type: list
  elements: str
url:
  description: The base URL that was checked (a local tunnel's address with O(service)).
  returned: always
  type: str
model:
  description: The expected served model name.
  returned: always
  type: str
health:
  description: Status, time to first byte and total time of C(/health), and how many tries it took.
  returned: success
  type: dict
models:
  description: The model ids C(/v1/models) listed, and its timings.
  returned: success
  type: dict
chat:
  description: The reply, finish reason, token usage, time to first byte and total time of the chat completion.
  returned: when chat was checked
  type: dict
  sample: {"reply": "ready", "ttfb_s": 0.41, "total_s": 0.42, "usage": {"completion_tokens": 2}}
unauthenticated:
  description:
    - With a key given, the answer to C(GET /v1/models) without it, which must be a refusal (401); a server that
      answers is reported as a failure.
  returned: when a key is given
  type: dict
  sample: {"path": "/v1/models", "status": 401}
api:
  description: With O(api=auto), what was checked (V(chat) or V(embeddings)).
  returned: when api is auto
  type: str
  sample: chat
embeddings:
  description: With O(api=embeddings), the embedding's length, the usage and the timings.
  returned: when embeddings were checked
  type: dict
  sample: {"dimensions": 384, "ttfb_s": 0.02, "total_s": 0.02, "usage": {"prompt_tokens": 9, "total_tokens": 9}}
stream:
  description: For O(stream=true), time to first token, total time, chunks and the assembled reply.
  returned: when stream is true
  type: dict
pod:
  description: With O(service) or O(pod), the pod the check went to.
  returned: when service or pod is given
  type: str
elapsed_s:
  description: Seconds the whole check took.
  returned: success
  type: float
"""

from ansible_collections.inferops.vllm.plugins.module_utils import _runner
from ansible_collections.inferops.vllm.plugins.module_utils._errors import NotFoundError
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._args import K8S_AUTH_ARG_SPEC, K8sModule
from ansible_collections.inferops.vllm.plugins.module_utils.serving._openai_check import EndpointChecker, Transport


def check(module):
    try:
        result = ask(module)
        result["summary"] = summary_lines(result)
        return result
    except NotFoundError as exc:
        # Reading is safe in check mode: only a namespace that is not there
        # (an earlier task only pretended to create it, with what goes in it)
        # leaves nothing to check. In a namespace that exists, a Service, pod
        # or Secret that is not there is a wrong name, as outside check mode.
        if not module.check_mode or not namespace_missing(module.params):
            raise
        return {"changed": False, "skipped": True, "msg": f"{exc.msg} (check mode: not created yet, not checked)"}


def summary_lines(result: dict) -> list[str]:
    """What was asked and how fast it answered, for a person reading the run."""
    if result.get("api") == "embeddings":
        emb = result.get("embeddings") or {}
        return [f"{result.get('model')} answered an embedding of {emb.get('dimensions')} dimensions in "
                f"{emb.get('total_s')} s"]
    chat = result.get("chat") or {}
    reply = str(chat.get("reply") or "")
    lines = [f"{result.get('model')} answered: {reply[:77] + '...' if len(reply) > 80 else reply}",
             f"chat: first byte {chat.get('ttfb_s')} s, total {chat.get('total_s')} s"
             + (f"; stream: first token {result['stream'].get('ttft_s')} s" if result.get("stream") else "")]
    return lines


def namespace_missing(p) -> bool:
    from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import connect, missing_namespace

    return bool(p["namespace"]) and missing_namespace(connect(p), p["namespace"], p["request_timeout"]) is not None


def ask(module):
    p = module.params

    def run(base_url):
        transport = Transport(base_url, p["server_validate_certs"], p["server_ca_cert"], p["http_timeout"])
        checker = EndpointChecker(transport, p["model"], p["server_api_key"], p["prompt"], p["max_tokens"],
                                  p["startup_timeout"], key_source=key_source,
                                  cluster_token_given=bool(p.get("api_key")))
        return checker.check(stream=p["stream"], api=p["api"])

    from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import connect

    api = connect(p) if p["server_api_key_secret"] or p["service"] or p["pod"] else None
    key_source = "the given server_api_key"
    if p["server_api_key_secret"]:
        key_source = (f"the key from Secret {p['namespace']}/{p['server_api_key_secret']} "
                      f"(key {p['server_api_key_secret_key']}, given as server_api_key_secret)")
        from ansible_collections.inferops.vllm.plugins.module_utils.k8s._secret import masked_forms, read_value

        p["server_api_key"] = read_value(api, p["server_api_key_secret"], p["namespace"],
                                         p["server_api_key_secret_key"], p["request_timeout"])
        module.no_log_values.update(masked_forms(p["server_api_key"]))

    if p["url"]:
        return {"changed": False, **run(p["url"])}

    from ansible_collections.inferops.vllm.plugins.module_utils.k8s import _tunnel

    if p["pod"]:
        pod = p["pod"]
        port = _tunnel.resolve_pod_port(api, p["namespace"], pod, p["service_port"], p["request_timeout"])
    else:
        pod, port = _tunnel.resolve_service_pod(api, p["namespace"], p["service"], p["service_port"],
                                                p["request_timeout"])
    return {"changed": False, "pod": pod, **_tunnel.through_pod(api, p["namespace"], pod, port, run)}


def main():
    spec = dict(
        url=dict(type="str"),
        service=dict(type="str"),
        pod=dict(type="str"),
        namespace=dict(type="str"),
        service_port=dict(type="str"),
        model=dict(type="str", required=True),
        server_api_key=dict(type="str", no_log=True),
        server_api_key_secret=dict(type="str", no_log=False),
        server_api_key_secret_key=dict(type="str", default="api-key", no_log=False),
        stream=dict(type="bool", default=False),
        api=dict(type="str", default="chat", choices=["auto", "chat", "embeddings"]),
        prompt=dict(type="str", default="Reply with the single word: ready"),
        max_tokens=dict(type="int", default=16, no_log=False),
        startup_timeout=dict(type="float", default=300),
        http_timeout=dict(type="float", default=60),
        server_validate_certs=dict(type="bool", default=True),
        server_ca_cert=dict(type="path"),
        **K8S_AUTH_ARG_SPEC,
    )
    module = K8sModule(
        argument_spec=spec,
        supports_check_mode=True,
        required_one_of=[("url", "service", "pod")],
        mutually_exclusive=[("url", "service", "pod"), ("server_api_key", "server_api_key_secret")],
        required_by={"service": "namespace", "pod": "namespace", "server_api_key_secret": "namespace"},
    )
    _runner.run(module, check)


if __name__ == "__main__":
    main()
