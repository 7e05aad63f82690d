"""How a kubelet stops a container of a pod being deleted, for the sandbox's
processes that play the kubelet: the job runner for the pods it runs
(jobs.py) and the vLLM stand-in for the vLLM pods it answers for
(hack/openai_standin.py).

What the kubelet of Kubernetes v1.37.2 does (pkg/kubelet/kuberuntime/
kuberuntime_container.go, killContainer, executePreStopHook and
setTerminationGracePeriod; minimumGracePeriodInSeconds in
kuberuntime_manager.go):

- the grace period is the deletion's (metadata.deletionGracePeriodSeconds),
  else the pod's spec.terminationGracePeriodSeconds, else 2 s;
- if the container has a preStop hook and the grace period is above 0, the
  hook runs first and is waited for at most the grace period (a hook still
  running then is left behind); the whole seconds it took come off the grace
  period, so the grace period counts from the start of preStop;
- then the runtime's StopContainer with what is left, never less than 2 s:
  SIGTERM, and SIGKILL if the container has not exited by then.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Callable

MIN_GRACE_S = 2  # minimumGracePeriodInSeconds: also the grace period when neither field is set


def grace_period(pod: dict) -> int:
    """setTerminationGracePeriod for a pod being deleted (no probe kill)."""
    deletion = (pod.get("metadata") or {}).get("deletionGracePeriodSeconds")
    if deletion is not None:
        return int(deletion)
    spec = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    if spec is not None:
        return int(spec)
    return MIN_GRACE_S


def prestop_of(container: dict) -> dict | None:
    return ((container or {}).get("lifecycle") or {}).get("preStop")


def run_handler(handler: dict, run_exec: Callable[[list[str]], object], http_get: Callable[[dict], object],
                cancel: threading.Event) -> None:
    """One lifecycle handler: exec (the command, in the container's
    environment), httpGet (a GET to the container's port), or sleep."""
    if "exec" in handler:
        run_exec(list((handler["exec"] or {}).get("command") or []))
    elif "httpGet" in handler:
        http_get(handler["httpGet"] or {})
    elif "sleep" in handler:
        cancel.wait(int((handler["sleep"] or {}).get("seconds", 0)))
    else:
        raise ValueError(f"lifecycle handler {sorted(handler)} is not one the sandbox runs (exec, httpGet, sleep)")


def stop_container(container: dict, grace: int, run_hook: Callable[[dict, threading.Event], object],
                   send: Callable[[int], object], wait_exit: Callable[[float], bool],
                   log: Callable[[str], object] = lambda text: None, clock: Callable[[], float] = time.monotonic) -> dict:
    """Stop one container as killContainer does: ``run_hook(handler, cancel)``
    runs its preStop handler (``cancel`` is set when the kubelet stops
    waiting for it), ``send(sig)`` signals the container, ``wait_exit(s)``
    says whether it exited within s seconds. Returns what happened: the
    seconds preStop took, the grace period left for SIGTERM, and whether
    SIGKILL was needed."""
    started = clock()
    outcome: dict = {"grace_s": grace, "prestop_s": None, "prestop_done": None}
    hook = prestop_of(container)
    if hook and grace > 0:
        done, cancel = threading.Event(), threading.Event()

        def run() -> None:
            try:
                run_hook(hook, cancel)
            except Exception as exc:  # noqa: BLE001 - the kubelet records it and goes on to SIGTERM
                log(f"preStop hook failed: {exc}")
            finally:
                done.set()

        threading.Thread(target=run, daemon=True).start()
        outcome["prestop_done"] = done.wait(grace)
        cancel.set()
        if not outcome["prestop_done"]:
            log(f"preStop hook not completed in the grace period ({grace} s)")
        took = clock() - started
        outcome["prestop_s"] = round(took, 3)
        grace -= int(took)
    grace = max(grace, MIN_GRACE_S)
    outcome["stop_grace_s"] = grace
    send(signal.SIGTERM)
    outcome["killed"] = not wait_exit(grace)
    if outcome["killed"]:
        send(signal.SIGKILL)
    return outcome
