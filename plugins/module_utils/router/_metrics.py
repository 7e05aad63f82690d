# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The router's metrics in Prometheus' text format (version 0.0.4): a few
counters, gauges and one histogram, not worth a library in the image."""

from __future__ import annotations

import bisect

# Seconds from a request's arrival to its backend's response headers (a
# stream's first byte is later): most are milliseconds, a cold replica's seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

HELP = {
    "inferops_router_requests_total": ("counter", "Requests answered, by model, replica (empty: answered by the router itself) and HTTP status code."),
    "inferops_router_retries_total": ("counter", "Requests sent to another replica after one could not be reached."),
    "inferops_router_in_flight": ("gauge", "Requests in flight, by model and replica."),
    "inferops_router_replicas": ("gauge", "Ready replicas of each model, from its EndpointSlices."),
    "inferops_router_response_seconds": ("histogram", "Seconds until the replica's response headers, by model."),
}


def _labels(labels: tuple) -> str:
    def esc(value) -> str:
        return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in labels) + "}" if labels else ""


class Metrics:
    def __init__(self):
        self.values: dict[str, dict[tuple, float]] = {name: {} for name in HELP}
        self.histograms: dict[tuple, list] = {}  # labels -> [bucket counts..., sum, count]

    def inc(self, name: str, amount: float = 1.0, **labels) -> None:
        key = tuple(sorted(labels.items()))
        self.values[name][key] = self.values[name].get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels) -> None:
        self.values[name][tuple(sorted(labels.items()))] = float(value)

    def forget(self, **labels) -> None:
        """Drop every series whose labels include these (a replica that is gone)."""
        wanted = set(labels.items())
        for series in self.values.values():
            for key in [k for k in series if wanted <= set(k)]:
                del series[key]

    def observe(self, seconds: float, **labels) -> None:
        key = tuple(sorted(labels.items()))
        h = self.histograms.setdefault(key, [0] * len(BUCKETS) + [0.0, 0])
        for i in range(bisect.bisect_left(BUCKETS, seconds), len(BUCKETS)):
            h[i] += 1
        h[-2] += seconds
        h[-1] += 1

    def text(self) -> str:
        lines = []
        for name, (kind, helptext) in HELP.items():
            lines += [f"# HELP {name} {helptext}", f"# TYPE {name} {kind}"]
            if kind == "histogram":
                for key, h in sorted(self.histograms.items()):
                    for bound, count in zip(BUCKETS, h):
                        lines.append(f"{name}_bucket{_labels(key + (('le', repr(float(bound))),))} {count}")
                    lines.append(f"{name}_bucket{_labels(key + (('le', '+Inf'),))} {h[-1]}")
                    lines.append(f"{name}_sum{_labels(key)} {h[-2]}")
                    lines.append(f"{name}_count{_labels(key)} {h[-1]}")
                continue
            for key, value in sorted(self.values[name].items()):
                lines.append(f"{name}{_labels(key)} {value!r}")
        return "\n".join(lines) + "\n"
