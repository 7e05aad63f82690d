# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a kubernetes.core module, and run it again while its failure is one
that passes (the API server away or saying "later"), within the collection's
one retry budget (``module_utils/k8s/_retry.py``). The module gets the
module_defaults it would get as a task of its own (the play's cluster
connection), the task's check mode, diff and no_log."""

from __future__ import annotations

import time

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.inferops.vllm.plugins.module_utils.k8s._retry import RETRY_BUDGET_S, backoff, result_transient

try:  # the helper core's own package/service actions use (ansible-core 2.19 and later)
    from ansible.executor.module_common import _apply_action_arg_defaults as _with_defaults
except ImportError:  # pragma: no cover - older ansible-core
    from ansible.executor.module_common import get_action_args_with_defaults as _old_defaults

    def _with_defaults(action, task, args, templar):
        return _old_defaults(action, args, task.module_defaults, templar,
                             action_groups=task._parent._play._action_groups)

ALLOWED_PREFIX = "kubernetes.core."
display = Display()


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("module", "args"))
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        super().run(tmp, task_vars)
        module = self._task.args.get("module")
        args = self._task.args.get("args") or {}
        if not isinstance(module, str) or not module.startswith(ALLOWED_PREFIX):
            raise AnsibleActionFail(f"k8s_retry: module must name a kubernetes.core module "
                                    f"(kubernetes.core.k8s, kubernetes.core.k8s_info, ...), got {module!r}")
        if not isinstance(args, dict):
            raise AnsibleActionFail(f"k8s_retry: args must be a dict of {module}'s options")
        context = self._shared_loader_obj.module_loader.find_plugin_with_context(
            module, collection_list=self._task.collections)
        if not context.resolved:
            raise AnsibleActionFail(f"k8s_retry: module {module} is not installed (kubernetes.core)")
        args = _with_defaults(context.resolved_fqcn, self._task, dict(args), self._templar)
        deadline, attempt = time.monotonic() + RETRY_BUDGET_S, 0
        while True:
            result = self._execute_module(module_name=context.resolved_fqcn, module_args=args, task_vars=task_vars)
            if not result_transient(result) or time.monotonic() + backoff(attempt) > deadline:
                break
            # Said as Ansible says an until retry, so that an operator sees the outage being ridden out.
            why = (str(result.get("msg") or result.get("reason") or "no answer").splitlines() or [""])[0][:160]
            display.display(f"RETRYING: [{(task_vars or {}).get('inventory_hostname', '?')}]: "
                            f"{self._task.get_name()} ({why}); {attempt + 1} tries so far, next in "
                            f"{backoff(attempt):g}s", color="dark gray")
            # Backoff between tries of a server that does not answer: there is nothing to watch.
            time.sleep(backoff(attempt))
            attempt += 1
        result["attempts"] = attempt + 1
        return result
