# Shared by scripts/serve and scripts/test: make (or reuse) the virtualenv and install the
# package with the given extras, skipping pip when pyproject.toml has not changed since.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TRADELOOP_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

ensure_venv() {
  local extras="$1" spec="$ROOT" stamp hash
  [ -n "$extras" ] && spec="$ROOT[$extras]"
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
  fi
  hash="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
  stamp="$VENV/.tradeloop-installed-${extras:-base}-$hash"
  if [ ! -f "$stamp" ] && [ ! -f "$VENV/.tradeloop-installed-dev-$hash" ]; then
    echo "Installing tradeloop${extras:+[$extras]} into $VENV ..." >&2
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip >&2
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -e "$spec" >&2
    touch "$stamp"
  fi
}
