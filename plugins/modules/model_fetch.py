#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: model_fetch
short_description: Download a model into a directory from ModelScope, Hugging Face, S3 or a local path, verified and resumable
version_added: 0.1.0
description:
  - Makes O(dest) hold the complete model. Files already there with the right size and checksum are not fetched
    again; an interrupted download resumes (S3 - by the parts already written; the hubs - by their libraries'
    own partial files); every file is verified (size, and the source's own checksum where it publishes one - a
    C(SHA256SUMS) file, a Hugging Face blob's sha256 or git id, an S3 object's SHA256/SHA1/CRC checksum or its ETag,
    single-part or multipart); C(config.json) must exist and parse.
  - Completion is marked last and atomically by the file C(.inferops-model-complete.json) (source, file list,
    sizes, sha256, and each file's checksum as the source published it). While it is absent the directory does not count as a model. With the marker present and
    still true, a run reports no change and downloads nothing; O(verify=quick) trusts files whose size and
    modification time are as recorded, O(verify=full) hashes every file again against the source's checksum.
  - Every network call has a timeout, and failed calls are retried with backoff (O(max_attempts)).
  - One writer per folder - several fetchers started on one folder (pods sharing a claim or a hostPath) take turns
    through a lock file that works on NFS and other shared filesystems; the others wait (O(lock_timeout)) and then
    find the model complete.
  - The same code runs as a command inside a Kubernetes Job or initContainer -
    C(python -m ansible_collections.inferops.vllm.plugins.module_utils.model.fetch_cli --help).
options:
  source:
    description: Where the model comes from.
    type: str
    required: true
    choices: [modelscope, huggingface, s3, local]
  dest:
    description: Absolute path of the model directory to fill.
    type: path
    required: true
  model_id:
    description: Hub model id, C(owner/name), for O(source=modelscope) or O(source=huggingface).
    type: str
  revision:
    description: Hub revision (branch, tag or commit). Default C(master) on ModelScope, C(main) on Hugging Face.
    type: str
  token:
    description: Hub access token. Else E(HF_TOKEN) / E(MODELSCOPE_API_TOKEN) as the libraries read them.
    type: str
  endpoint_url:
    description: Hub endpoint or mirror URL, or the S3 endpoint of an S3-compatible store.
    type: str
  cache_dir:
    description:
      - The hub library's cache. Default C(<dest>/.cache/<source>), so files are hard-linked into O(dest), not copied.
    type: path
  offline:
    description: Use only the hub library's local cache; never reach the hub.
    type: bool
    default: false
  bucket:
    description: S3 bucket, for O(source=s3).
    type: str
  prefix:
    description: S3 key prefix (folder) of the model.
    type: str
    default: ""
  region:
    description: S3 region.
    type: str
  access_key:
    description: S3 access key. Else the usual AWS environment variables or instance credentials.
    type: str
  secret_key:
    description: S3 secret key.
    type: str
  session_token:
    description: S3 session token.
    type: str
  local_path:
    description: Directory (or mounted volume) to take the model from, for O(source=local).
    type: path
  hardlink:
    description: For O(source=local), hard-link files when on the same filesystem instead of copying.
    type: bool
    default: true
  allow_patterns:
    description: Only files matching these globs.
    type: list
    elements: str
  ignore_patterns:
    description: Skip files matching these globs.
    type: list
    elements: str
  verify:
    description: How to check files already present (see the description).
    type: str
    choices: [quick, full]
    default: quick
  refresh:
    description: Ask the source again even when the marker says the model is complete.
    type: bool
    default: false
  require_config:
    description: Refuse a directory without a parseable C(config.json).
    type: bool
    default: true
  part_size:
    description: S3 ranged-download part size in bytes (at least 5 MiB).
    type: int
    default: 16777216
  max_concurrency:
    description:
      - Transfers at once, over all files together. S3, ranged GETs of C(part_size) bytes, so a large file's parts
        and small files share one bound; the hubs, their library's download workers; a local source, files placed
        and checked.
      - Memory for S3 is about twice this times C(part_size) at most (parts in flight, and parts that arrived ahead
        of their turn to be hashed).
    type: int
    default: 16
  connect_timeout:
    description: Seconds to wait for a connection.
    type: float
    default: 10
  read_timeout:
    description: Seconds a transfer may stall before the try fails.
    type: float
    default: 60
  max_attempts:
    description: Tries of each network call before giving up.
    type: int
    default: 5
  progress_file:
    description:
      - A JSON file kept current, about once a second, with the model's name, bytes done and to do, files done, the
        rate over the last 10 seconds, the time left at that rate, and bytes an earlier, interrupted run had already
        fetched (poll it when running with C(async)).
    type: path
  lock_timeout:
    description:
      - Seconds to wait when another fetcher is writing O(dest) (its lock file C(.inferops-fetch.lock) is there
        and alive), before failing with a message that names the folder and the holder. C(0) fails at once.
      - A lock whose holder died (no heartbeat for 60 seconds) is taken over, whatever this value.
    type: float
    default: 3600
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - inferops.vllm.attributes
attributes:
  check_mode:
    support: full
    details: Lists what would be downloaded and downloads nothing. Hub sources are listed from their local cache.
  diff_mode:
    support: none
    details: It reports the files it downloaded (and would download, in check mode), not a diff.
requirements:
  - boto3 (source s3)
  - huggingface_hub (source huggingface)
  - modelscope (source modelscope)
author:
  - inferops.vllm maintainers (@inferops)
"""

EXAMPLES = r"""
- name: Qwen3 from ModelScope into the shared model volume
  inferops.vllm.model_fetch:
    source: modelscope
    model_id: Qwen/Qwen3-235B-A22B-Instruct-2507
    dest: /models/qwen3-235b

- name: The same model from the site's S3 mirror
  inferops.vllm.model_fetch:
    source: s3
    endpoint_url: https://s3.internal.example
    bucket: models
    prefix: qwen3-235b-a22b-instruct-2507
    access_key: "{{ vault_s3_access_key }}"
    secret_key: "{{ vault_s3_secret_key }}"
    dest: /models/qwen3-235b
  async: 7200
  poll: 30
"""

RETURN = r"""
complete:
  description: Whether O(dest) now holds the whole, verified model (false only in check mode).
  returned: always
  type: bool
dest:
  description: The model directory.
  returned: always
  type: str
source:
  description: What the model came from (no secrets).
  returned: always
  type: dict
files:
  description: The model's files.
  returned: success
  type: list
  elements: str
downloaded:
  description: Files fetched by this run.
  returned: when changed
  type: list
  elements: str
to_download:
  description: In check mode, the files that would be fetched.
  returned: check mode
  type: list
  elements: str
bytes_downloaded:
  description: Bytes fetched by this run.
  returned: always
  type: int
problems:
  description:
    - What was wrong with files already present (size, checksum), and downloads that did not match the source's
      checksum the first time; each was fetched again.
  returned: when files were checked
  type: list
  elements: str
architectures:
  description: C(architectures) from the model's config.json.
  returned: when changed
  type: list
  elements: str
elapsed_s:
  description: Seconds the run took.
  returned: always
  type: float
rate_bytes_s:
  description: Average download rate of this run.
  returned: when changed
  type: int
transfer:
  description:
    - How the bytes moved. S3, C(bytes_hashed_from_disk) (parts an interrupted run left, and parts that arrived while
      the memory budget was spent, hashed from the partial file; all others were hashed as they arrived) and
      C(buffer_peak_bytes). A local folder or a hub's cache, C(files_linked), C(files_range_copied) (copied by the
      filesystem, copy_file_range) and C(files_copied) (copied through this process, hashed on the way).
  returned: when changed
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.inferops.vllm.plugins.module_utils import _runner
from ansible_collections.inferops.vllm.plugins.module_utils.model._fetch import fetch_model
from ansible_collections.inferops.vllm.plugins.module_utils.model._lock import LOCK_DEFAULTS
from ansible_collections.inferops.vllm.plugins.module_utils.model._sources import FETCH_DEFAULTS, SOURCES, build_source


def run(module):
    p = module.params
    source = build_source(p)
    return fetch_model(source, p["dest"], verify=p["verify"], check_mode=module.check_mode, refresh=p["refresh"],
                       require_config=p["require_config"], progress_file=p["progress_file"],
                       lock_timeout=p["lock_timeout"])


def main():
    spec = dict(
        source=dict(type="str", required=True, choices=list(SOURCES)),
        dest=dict(type="path", required=True),
        model_id=dict(type="str"),
        revision=dict(type="str"),
        token=dict(type="str", no_log=True),
        endpoint_url=dict(type="str"),
        cache_dir=dict(type="path"),
        offline=dict(type="bool", default=False),
        bucket=dict(type="str"),
        prefix=dict(type="str", default=""),
        region=dict(type="str"),
        access_key=dict(type="str", no_log=True),
        secret_key=dict(type="str", no_log=True),
        session_token=dict(type="str", no_log=True),
        local_path=dict(type="path"),
        hardlink=dict(type="bool", default=True),
        allow_patterns=dict(type="list", elements="str"),
        ignore_patterns=dict(type="list", elements="str"),
        verify=dict(type="str", choices=["quick", "full"], default="quick"),
        refresh=dict(type="bool", default=False),
        require_config=dict(type="bool", default=True),
        part_size=dict(type="int", default=FETCH_DEFAULTS["part_size"]),
        max_concurrency=dict(type="int", default=FETCH_DEFAULTS["max_concurrency"]),
        connect_timeout=dict(type="float", default=FETCH_DEFAULTS["connect_timeout"]),
        read_timeout=dict(type="float", default=FETCH_DEFAULTS["read_timeout"]),
        max_attempts=dict(type="int", default=FETCH_DEFAULTS["max_attempts"]),
        progress_file=dict(type="path"),
        lock_timeout=dict(type="float", default=LOCK_DEFAULTS["lock_timeout"]),
    )
    module = AnsibleModule(
        argument_spec=spec,
        supports_check_mode=True,
        required_if=[
            ("source", "modelscope", ("model_id",)),
            ("source", "huggingface", ("model_id",)),
            ("source", "s3", ("bucket",)),
            ("source", "local", ("local_path",)),
        ],
        required_together=[("access_key", "secret_key")],
    )
    _runner.run(module, run)


if __name__ == "__main__":
    main()
