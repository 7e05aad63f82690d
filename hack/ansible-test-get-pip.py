"""Stand-in for the pip bootstrap script ansible-test downloads from its own
file server, which is unreachable here (only the package index is). It
installs the interpreter's bundled pip with ensurepip, then runs
`pip install` with the arguments ansible-test gives (e.g. pip==24.2) against
the package index, trusting the system's CA store as later pips do
(ansible-test hides pip's config files from it). tests/sanity copies this
file to where ansible-test caches the script."""

import ensurepip
import ssl
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
cert = ssl.get_default_verify_paths().openssl_cafile
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--cert", cert, *args]))
