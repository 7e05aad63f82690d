"""Which strings of a dict kubeconfig are credentials (kept out of output)."""

from __future__ import annotations

from ansible_collections.inferops.vllm.plugins.module_utils.k8s._args import kubeconfig_secrets


def test_user_credentials_are_secret_and_the_rest_is_not():
    cfg = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://10.0.0.1:6443", "certificate-authority-data": "Q0E="}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "admin"}}],
        "users": [
            {"name": "admin", "user": {"client-certificate-data": "Q0VSVA==", "client-key-data": "S0VZ"}},
            {"name": "robot", "user": {"token": "t0ken", "username": "bob", "password": "pw"}},
            {"name": "oidc", "user": {"auth-provider": {"name": "oidc", "config": {
                "client-secret": "cs", "id-token": "idt", "refresh-token": "rt"}}}},
            {"name": "exec", "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "aws",
                                               "args": ["--token", "argsecret"],
                                               "env": [{"name": "AWS_SECRET", "value": "envsecret"}],
                                               "interactiveMode": "Never"}}},
            {"name": "files", "user": {"client-certificate": "/etc/k/crt", "client-key": "/etc/k/key",
                                       "tokenFile": "/var/run/token"}},
        ],
    }
    assert kubeconfig_secrets(cfg) == {"Q0VSVA==", "S0VZ", "t0ken", "pw", "cs", "idt", "rt", "--token", "argsecret",
                                       "envsecret"}


def test_a_path_or_nothing_has_no_secrets():
    assert kubeconfig_secrets("/home/ops/.kube/config") == set()
    assert kubeconfig_secrets(None) == set()
    assert kubeconfig_secrets({"users": None}) == set()
    assert kubeconfig_secrets({"users": ["junk", {"user": None}]}) == set()
