"""The model_fetch module on a local folder: check mode, a download, no
change the second time, and tuning values refused by name."""

from __future__ import annotations

import json
import re

from support.modules import call


def model(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True, exist_ok=True)
    (src / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (src / "sub" / "w.safetensors").write_bytes(b"w" * 100)
    return src


def test_check_mode_then_fetch_then_nothing(tmp_path, capsys):
    args = {"source": "local", "local_path": str(model(tmp_path)), "dest": str(tmp_path / "dest")}
    dry = call("model_fetch", args, capsys, check_mode=True)
    assert dry["changed"] is True and sorted(dry["to_download"]) == ["config.json", "sub/w.safetensors"]
    assert not (tmp_path / "dest").exists()
    first = call("model_fetch", args, capsys)
    assert first["changed"] is True and first["architectures"] == ["LlamaForCausalLM"]
    again = call("model_fetch", args, capsys)
    assert again["changed"] is False and again["bytes_downloaded"] == 0


def test_tuning_of_zero_is_refused_by_name(tmp_path, capsys):
    for name in ("max_concurrency", "max_attempts", "read_timeout"):
        result = call("model_fetch", {"source": "local", "local_path": str(model(tmp_path)),
                                      "dest": str(tmp_path / "d"), name: 0}, capsys)
        assert result["failed"] is True and re.match(rf"{name}: 0(\.0)? must be more than 0", result["msg"]), result
    assert not (tmp_path / "d").exists()


def test_relative_dest_is_refused(tmp_path, capsys):
    result = call("model_fetch", {"source": "local", "local_path": str(model(tmp_path)), "dest": "rel/dir"}, capsys)
    assert result["failed"] is True and "dest" in result["msg"]
