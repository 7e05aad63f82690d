"""The generated vLLM flag catalog (_vllm_flags_data) against the real
`vllm serve` parsers: vllm_parser_dumps/vllm-X.Y.Z.json are every option
string that release's parser accepts, dumped from an installed wheel with
`hack/extract-vllm-flags.py --dump-parser` (docs/serving_plan.md says how)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils.serving import _vllm_flags_data as data

DUMPS = sorted((Path(__file__).parent / "vllm_parser_dumps").glob("vllm-*.json"))
BOOLEAN_ACTIONS = ("BooleanOptionalAction", "EnableDisableAction")


def vkey(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_the_proof_covers_the_newest_release_and_020():
    dumped = {load(p)["vllm"] for p in DUMPS}
    assert data.VERSIONS[-1] in dumped
    assert any(v.startswith("0.20.") for v in dumped)


@pytest.mark.parametrize("path", DUMPS, ids=lambda p: p.stem)
def test_catalog_accepts_exactly_what_the_real_parser_accepts(path):
    dump = load(path)
    version = dump["vllm"]
    assert path.name == f"vllm-{version}.json"
    table = data.flags_for(version)
    derived = set(table["flags"]) | set(table["short_flags"]) | {"--no-" + f[2:] for f in table["boolean"]}
    real = set(dump["option_strings"])
    assert sorted(real - derived) == [], "accepted by vLLM, missing from the catalog"
    assert sorted(derived - real) == [], "in the catalog, refused by vLLM"
    assert data.accepted_options(version) == real


@pytest.mark.parametrize("path", DUMPS, ids=lambda p: p.stem)
def test_booleans_and_deprecations_match_the_real_parser(path):
    dump = load(path)
    table = data.flags_for(dump["vllm"])
    boolean = set(table["boolean"])
    deprecated = set(table["deprecated"])
    for action in dump["actions"]:
        accepts = set(action["accepts"])
        negations = {o for o in accepts if o.startswith("--no-")}
        if action["action"] in BOOLEAN_ACTIONS:
            # The primary names take the --no- forms; for EnableDisableAction
            # the --disable-/--enable- inverse is a plain flag of the catalog.
            assert {"--no-" + f[2:] for f in accepts & boolean} == negations, action
        else:
            assert not accepts & boolean, action
        marked = action["deprecated"] or "Deprecat" in action["action"]
        if marked:
            assert accepts <= deprecated, action
        if accepts & deprecated:
            assert marked or action["help_deprecation"], action
            assert accepts <= deprecated, action


def test_catalog_is_stored_once_as_base_and_minimal_deltas():
    assert data.VERSIONS == sorted(data.VERSIONS, key=vkey) and len(set(data.VERSIONS)) == len(data.VERSIONS)
    previous = {key: set(values) for key, values in data.BASE.items()}
    for version, delta in data.DELTAS:
        for key, change in delta.items():
            added, removed = set(change.get("+", ())), set(change.get("-", ()))
            assert added or removed, (version, key)
            assert not added & previous[key] and removed <= previous[key], (version, key)
            previous[key] = (previous[key] - removed) | added
        assert {key: sorted(values) for key, values in previous.items()} == data.flags_for(version)


def test_every_minor_from_010_to_the_newest_is_covered():
    minors = {vkey(v)[:2] for v in data.VERSIONS}
    newest = vkey(data.VERSIONS[-1])[:2]
    assert newest >= (0, 33)
    assert minors == {(0, m) for m in range(10, newest[1] + 1)}
    assert {"0.10.0", "0.11.0", "0.12.0"} <= set(data.VERSIONS)


def test_flags_for_and_the_read_only_mapping():
    table = data.flags_for("0.12.0")
    assert set(table) == {"flags", "short_flags", "boolean", "deprecated"}
    table["flags"].append("--mine")
    assert "--mine" not in data.flags_for("0.12.0")["flags"]
    assert isinstance(data.VLLM_FLAGS, Mapping) and list(data.VLLM_FLAGS) == data.VERSIONS
    assert data.VLLM_FLAGS["0.33.0"] == data.flags_for("0.33.0") and "0.9.0" not in data.VLLM_FLAGS
    with pytest.raises(TypeError):
        data.VLLM_FLAGS["0.34.0"] = table  # pylint: disable=unsupported-assignment-operation
    with pytest.raises(KeyError):
        data.flags_for("0.9.0")
    for version in data.VERSIONS:
        t = data.flags_for(version)
        assert set(t["boolean"]) <= set(t["flags"])
        assert set(t["deprecated"]) <= data.accepted_options(version)
        assert all(f.startswith("--") for f in t["flags"]) and all(not f.startswith("--") for f in t["short_flags"])


def accepts(version: str, flag: str) -> bool:
    return flag in data.accepted_options(version)


def test_what_the_releases_say():
    # --swap-space: parses in 0.12 (no effect on the V1 engine), gone from 0.18.
    assert accepts("0.12.0", "--swap-space") and accepts("0.17.1", "--swap-space")
    assert not accepts("0.18.1", "--swap-space")
    # --disable-log-requests: plain in 0.10.0, deprecated 0.10.2-0.16, removed
    # 0.17-0.32, back in 0.33 as the inverse of --enable-log-requests.
    assert accepts("0.10.0", "--disable-log-requests")
    assert "--disable-log-requests" not in data.flags_for("0.10.0")["deprecated"]
    assert "--disable-log-requests" in data.flags_for("0.11.0")["deprecated"]
    assert "--disable-log-requests" in data.flags_for("0.12.0")["deprecated"]
    assert not accepts("0.20.2", "--disable-log-requests") and not accepts("0.32.0", "--disable-log-requests")
    assert accepts("0.33.0", "--disable-log-requests") and accepts("0.33.0", "--no-enable-log-requests")
    # 0.33's EnableDisableAction: --enable-x / --disable-x (and the hidden --no-enable-x).
    for flag in ("--disable-prefix-caching", "--disable-chunked-prefill", "--disable-expert-parallel"):
        assert accepts("0.33.0", flag) and not accepts("0.32.0", flag)
    assert accepts("0.33.0", "--no-enable-prefix-caching") and not accepts("0.33.0", "--no-disable-prefix-caching")
    assert accepts("0.12.0", "--no-enable-prefix-caching")
    # Flags inherited from BaseFrontendArgs (0.17 on) are read.
    for version in ("0.17.1", "0.20.2", "0.27.1", "0.33.0"):
        assert accepts(version, "--tool-call-parser") and accepts(version, "--enable-auto-tool-choice")
    # Short flags.
    assert {"-tp", "-pp", "-q"} <= set(data.flags_for("0.10.0")["short_flags"])
    assert "-ep" in data.flags_for("0.33.0")["short_flags"] and not accepts("0.13.0", "-ep")
    # Never a flag.
    assert not any(accepts(v, "--max-paddings") for v in data.VERSIONS)
    # Removed by 0.33.
    for flag in ("--task", "--cuda-graph-sizes", "--disable-mm-preprocessor-cache", "--calculate-kv-scales",
                 "--enable-multimodal-encoder-data-parallel", "--disable-frontend-multiprocessing",
                 "--max-num-partial-prefills", "--max-long-partial-prefills", "--override-attention-dtype",
                 "--logits-processor-pattern"):
        assert accepts("0.12.0", flag) and not accepts("0.33.0", flag), flag
    # 0.34: the extensible KV cache's switch (an EnableDisableAction), nothing
    # removed, three options newly deprecated (by their help texts).
    for flag in ("--enable-extensible-kv-cache", "--disable-extensible-kv-cache", "--no-enable-extensible-kv-cache",
                 "--max-num-inflight-kv-loads", "--cache-aware-admission-window", "--shuffle-safetensors-files"):
        assert accepts("0.34.0", flag) and not accepts("0.33.0", flag), flag
    assert data.accepted_options("0.33.0") <= data.accepted_options("0.34.0")
    assert set(data.flags_for("0.34.0")["deprecated"]) - set(data.flags_for("0.33.0")["deprecated"]) == {
        "--cudagraph-capture-sizes", "--max-cudagraph-capture-size", "--enable-layerwise-nvtx-tracing",
        "--disable-layerwise-nvtx-tracing", "--no-enable-layerwise-nvtx-tracing"}
    # Announced for removal in 0.34.0 by their help, and still there.
    assert {"--mamba-cache-mode", "--ir-op-priority"} <= set(data.flags_for("0.34.0")["deprecated"])
