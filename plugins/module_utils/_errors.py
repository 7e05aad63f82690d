# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typed errors raised by module_utils; modules turn them into fail_json in
one place (_runner.run)."""

from __future__ import annotations


class InferopsError(Exception):
    """Base error. ``details`` is returned to the user beside ``msg``."""

    def __init__(self, msg: str, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


class ParameterError(InferopsError):
    """Bad input, found before anything was changed."""


class MissingDependency(InferopsError):
    """A Python library the module needs is not installed where it runs."""


class ClusterError(InferopsError):
    """The Kubernetes API refused or failed a request."""


class NotFoundError(InferopsError):
    """An object the user named does not exist."""


class WaitFailed(InferopsError):
    """A wait ended without success: timed out, or a cause that will not fix
    itself was seen. ``details['diagnosis']`` says why."""


class EndpointError(InferopsError):
    """The served endpoint did not answer as a working server would."""
