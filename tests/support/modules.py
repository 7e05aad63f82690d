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


def call_in_own_process(module: str, args: dict, check_mode: bool = False, diff: bool = False) -> dict:
    """As call(), in a Python process of its own, as Ansible runs a module:
    what the module reports as warnings depends on the process (once the
    controller's code is imported, as a filter plugin's test does, module
    warnings no longer reach the result)."""
    import os
    import subprocess
    import sys

    code = ("import importlib, json, sys\n"
            "from ansible.module_utils.testing import patch_module_args\n"
            "args = json.load(sys.stdin)\n"
            f"main = importlib.import_module('ansible_collections.inferops.vllm.plugins.modules.{module}').main\n"
            "with patch_module_args(args):\n"
            "    try:\n"
            "        main()\n"
            "    except SystemExit:\n"
            "        pass\n")
    args = {**args, "_ansible_check_mode": check_mode, "_ansible_diff": diff}
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps(args), capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}, check=False,
                          timeout=120)
    assert done.stdout.strip(), done.stderr
    return json.loads(done.stdout)
