# Shared by scripts/serve and scripts/test: install the browser assets of package.json (Swagger
# UI, ReDoc, htmx, lightweight-charts, CodeMirror; see docs/architecture.md) with `npm ci` when node_modules is missing or
# package-lock.json changed since the last install, like _venv.sh does for pyproject.toml.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

ensure_node_modules() {
  local hash stamp
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "tradeloop needs Node.js (18 or later) and npm to install its browser assets" \
         "(package.json): install them (Debian/Ubuntu: apt-get install -y nodejs npm) and" \
         "run this command again." >&2
    exit 1
  fi
  hash="$(sha256sum "$ROOT/package-lock.json" | cut -c1-16)"
  # Inside node_modules: npm ci empties the folder, so an old stamp never outlives it.
  stamp="$ROOT/node_modules/.tradeloop-installed-$hash"
  if [ ! -f "$stamp" ]; then
    echo "Installing the browser assets (npm ci) into $ROOT/node_modules ..." >&2
    (cd "$ROOT" && npm ci --no-audit --no-fund >&2)
    touch "$stamp"
  fi
}

# Bundle what the pages cannot load as published (CodeMirror's many small ES modules) with the
# esbuild package.json pins, into node_modules/.tradeloop-bundles (served under
# /static/vendor/bundles): again only when package-lock.json or an entry file changed.
ensure_web_bundles() {
  local entries="$ROOT/src/tradeloop/web/frontend" out="$ROOT/node_modules/.tradeloop-bundles"
  local hash stamp entry
  hash="$(cat "$ROOT/package-lock.json" "$entries"/*.js | sha256sum | cut -c1-16)"
  stamp="$out/.built-$hash"
  if [ -f "$stamp" ]; then
    return
  fi
  echo "Bundling the browser modules (esbuild) into $out ..." >&2
  rm -rf "$out"
  for entry in "$entries"/*.js; do
    "$ROOT/node_modules/.bin/esbuild" "$entry" --bundle --format=esm --minify \
      --log-level=warning --outfile="$out/$(basename "$entry")" >&2
  done
  touch "$stamp"
}

# The browser tests (tests/web) drive Debian's chromium through Playwright (never a browser
# download of Playwright's own): install it when missing, as root, or say what is needed.
ensure_chromium() {
  if command -v chromium >/dev/null 2>&1; then
    return
  fi
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "The browser tests need Chromium on PATH as 'chromium': install it (Debian/Ubuntu:" \
         "sudo apt-get install -y chromium) and run this command again." >&2
    exit 1
  fi
  echo "Installing chromium (apt-get) for the browser tests ..." >&2
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >&2
}
