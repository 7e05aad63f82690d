"""Call a module's main() in-process, as Ansible would, and read its result:
module-level unit tests, no playbook and no cluster."""

from __future__ import annotations

import importlib
import json

import pytest
from ansible.module_utils.testing import patch_module_args


def call(module: str, args: dict, capsys, check_mode: bool = False, diff: bool = False) -> dict:
    main = importlib.import_module(f"ansible_collections.inferops.vllm.plugins.modules.{module}").main
    args = {**args, "_ansible_check_mode": check_mode, "_ansible_diff": diff}
    with patch_module_args(args), pytest.raises(SystemExit):
        main()
    return json.loads(capsys.readouterr().out)
