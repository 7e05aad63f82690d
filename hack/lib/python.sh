# Sourced by hack/ scripts: find the Python the project's .venv is made with.
# ansible-core 2.21 runs on Python 3.12 or newer. Take the first such
# interpreter on PATH (or $PYTHON); failing that, one that pyenv has installed.
is_new_enough() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; }
find_python() {
  local c v
  for c in ${PYTHON:-} python3.12 python3.13 python3.14 python3; do
    if is_new_enough "$c"; then command -v "$c"; return 0; fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.[0-9]+(\.[0-9]+)?$' | sort -V); do
      c=$(pyenv prefix "$v" 2>/dev/null)/bin/python3
      if is_new_enough "$c"; then echo "$c"; return 0; fi
    done
  fi
  return 1
}
require_python() {
  if ! find_python; then
    echo "no Python 3.12 or newer found (ansible-core 2.21 needs it)." >&2
    echo "  Install one (your distribution's python3.12 package, or 'pyenv install 3.12'), or point" >&2
    echo "  PYTHON at it: PYTHON=/path/to/python3.12 make setup" >&2
    exit 1
  fi
}
