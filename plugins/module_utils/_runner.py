# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place where module_utils errors become fail_json."""

from __future__ import annotations

import traceback

from ansible_collections.inferops.vllm.plugins.module_utils._errors import InferopsError


def run(module, action):
    """Call ``action(module)``, which returns the result dict, and exit the
    module with it; an InferopsError becomes a failure carrying its details."""
    try:
        result = action(module)
    except InferopsError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    except Exception as exc:  # noqa: BLE001 - last resort: never a bare traceback
        module.fail_json(msg=f"unexpected error: {exc.__class__.__name__}: {exc}", exception=traceback.format_exc())
    module.exit_json(**result)
