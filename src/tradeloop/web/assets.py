"""Browser assets from npm, served under /static/vendor: never a CDN, never copied into git.

package.json (exact versions, package-lock.json) at the checkout's root lists them; `npm ci`,
run by scripts/serve and scripts/test, installs them into NODE_MODULES_DIR.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

VENDOR_URL = "/static/vendor"
# URL name → the folder inside node_modules holding the files browsers load (only that folder
# is served, not the package's sources or node_modules as a whole).
VENDOR_FOLDERS = {
    "swagger-ui": "swagger-ui-dist",
    "redoc": "redoc/bundles",
    "htmx": "htmx.org/dist",
    "htmx-sse": "htmx-ext-sse/dist",
    "lightweight-charts": "lightweight-charts/dist",
    # What scripts/_web_assets.sh bundles with esbuild (src/tradeloop/web/frontend/*.js).
    "bundles": ".tradeloop-bundles",
}


def vendor_url(name: str, file: str) -> str:
    """The URL of `file` of the vendor folder `name` (a key of VENDOR_FOLDERS)."""
    return f"{VENDOR_URL}/{name}/{file}"


def vendor_file(node_modules: Path, name: str, file: str) -> Path:
    return node_modules / VENDOR_FOLDERS[name] / file


def mount_vendor_assets(app: FastAPI, node_modules: Path) -> None:
    """Serve each installed vendor folder. A missing one is not mounted (its URLs answer 404;
    the pages that need it say how to install it), so the API still starts without npm."""
    for name, folder in VENDOR_FOLDERS.items():
        directory = node_modules / folder
        if directory.is_dir():
            app.mount(f"{VENDOR_URL}/{name}", StaticFiles(directory=directory),
                      name=f"vendor-{name}")
