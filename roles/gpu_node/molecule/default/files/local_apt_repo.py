"""A local, signed APT repository for the gpu_node role's tests: NVIDIA's
repository cannot be reached here, so the test builds one that stands in for
it and serves it on 127.0.0.1.

    local_apt_repo.py build DIR      # key, package, Packages, InRelease, gpgkey
    local_apt_repo.py serve DIR PORT PIDFILE   # serve DIR over HTTP, detached

The package is a stand-in named nvidia-container-toolkit: it installs
/usr/bin/nvidia-ctk and /usr/bin/nvidia-container-runtime as small scripts.
What it proves is the role's path: the key download, the deb822 source with
signed-by, apt verifying the signature, and the install."""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

PACKAGE = "nvidia-container-toolkit"
VERSION = "1.18.0-1~inferopstest"


def run(*cmd: str, env: dict | None = None, cwd: Path | None = None) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=cwd).stdout


def build(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    gnupg = root / "gnupg"
    gnupg.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "GNUPGHOME": str(gnupg)}
    if not (root / "gpgkey").exists():
        run("gpg", "--batch", "--passphrase", "", "--quick-generate-key",
            "inferops test repository <repo@inferops.invalid>", "ed25519", "sign", "1d", env=env)
        (root / "gpgkey").write_text(run("gpg", "--batch", "--armor", "--export", env=env))
    pkg = root / "build" / PACKAGE
    for path, body in (("usr/bin/nvidia-ctk", f'#!/bin/sh\necho "NVIDIA Container Toolkit CLI version {VERSION}"\n'),
                       ("usr/bin/nvidia-container-runtime", "#!/bin/sh\nexec runc \"$@\"\n")):
        target = pkg / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
        target.chmod(0o755)
    (pkg / "DEBIAN").mkdir(parents=True, exist_ok=True)
    (pkg / "DEBIAN" / "control").write_text(
        f"Package: {PACKAGE}\nVersion: {VERSION}\nArchitecture: all\nMaintainer: inferops tests <repo@inferops.invalid>\n"
        "Description: stand-in for NVIDIA's container toolkit in the role's tests\n")
    pool = root / "repo"
    pool.mkdir(exist_ok=True)
    run("dpkg-deb", "--root-owner-group", "--build", str(pkg), str(pool / f"{PACKAGE}_{VERSION}_all.deb"))
    packages = run("dpkg-scanpackages", "--multiversion", ".", "/dev/null", cwd=pool)
    (pool / "Packages").write_text(packages)
    (pool / "Packages.gz").write_bytes(gzip.compress(packages.encode()))
    lines = ["Origin: inferops-test", "Label: inferops-test", "Suite: stable", "Codename: stable",
             f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S UTC', time.gmtime())}", "SHA256:"]
    for name in ("Packages", "Packages.gz"):
        data = (pool / name).read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}")
    (pool / "Release").write_text("\n".join(lines) + "\n")
    inrelease = pool / "InRelease"
    if inrelease.exists():
        inrelease.unlink()
    run("gpg", "--batch", "--yes", "--clearsign", "--output", str(inrelease), str(pool / "Release"), env=env)


def serve(root: Path, port: int, pidfile: Path) -> None:
    if os.fork():
        return
    os.setsid()
    with open(os.devnull, "rb") as null_in, open(root / "http.log", "ab") as log:
        os.dup2(null_in.fileno(), 0)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    pidfile.write_text(str(os.getpid()))
    os.execvp(sys.executable, [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(root),
                               str(port)])


if __name__ == "__main__":
    verb = sys.argv[1]
    if verb == "build":
        build(Path(sys.argv[2]))
    elif verb == "serve":
        serve(Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
    else:
        raise SystemExit(f"unknown verb {verb}")
