"""The API docs, /docs (Swagger UI) and /redoc, on assets installed from npm.

FastAPI's own pages load their assets from a CDN and start Swagger UI with an inline script,
which the Content-Security-Policy (tradeloop/security_headers.py) forbids: these pages load the
vendor bundles from /static/vendor and start them from a static initialiser that reads the
OpenAPI URL from a data- attribute.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from tradeloop.deps import SettingsDep
from tradeloop.security_headers import content_security_policy
from tradeloop.web.assets import vendor_file, vendor_url
from tradeloop.web.pages import TEMPLATES

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class DocsPage:
    title: str
    stylesheets: tuple[tuple[str, str], ...]  # (vendor folder, file)
    scripts: tuple[tuple[str, str], ...]
    initialiser: str
    # Set for a bundle that writes <style> elements (ReDoc's styled-components): the page gets
    # a per-response nonce for them, which the initialiser hands to the bundle.
    style_nonce: bool = False
    # Further CSP directives of the page (tradeloop/security_headers.py has the rest).
    csp: tuple[tuple[str, str], ...] = ()


SWAGGER = DocsPage("Swagger UI", (("swagger-ui", "swagger-ui.css"),),
                   (("swagger-ui", "swagger-ui-bundle.js"),), "/static/swagger-init.js")
# ReDoc 2.5.4 also injects perfect-scrollbar's CSS when its bundle loads, before it knows the
# nonce (the same CSS reaches the page again through styled-components): allowed by its hash
# (and the empty <style> it starts from). Its search index runs in a worker built from a blob.
# Its sidebar's "API docs by Redocly" logo is an image on its CDN that the policy blocks (the
# link stays, as text): the one CSP report the page makes.
REDOC_SCROLLBAR_CSS_HASHES = ("'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc='",
                              "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='")
REDOC = DocsPage("ReDoc", (), (("redoc", "redoc.standalone.js"),), "/static/redoc-init.js",
                 style_nonce=True, csp=(("worker-src", "'self' blob:"),))


@router.get("/docs")
def swagger_ui(request: Request, settings: SettingsDep) -> Response:
    """Swagger UI: every operation, with "Try it out" (the browser's session or a token)."""
    return _docs_page(request, settings, SWAGGER)


@router.get("/redoc")
def redoc(request: Request, settings: SettingsDep) -> Response:
    """ReDoc: the same OpenAPI document as one readable page."""
    return _docs_page(request, settings, REDOC)


def _docs_page(request: Request, settings: SettingsDep, page: DocsPage) -> Response:
    assets = page.stylesheets + page.scripts
    missing = [str(path) for path in (vendor_file(settings.node_modules_dir, name, file)
                                      for name, file in assets) if not path.is_file()]
    if missing:
        return PlainTextResponse(
            f"The API docs' browser assets are not installed (missing: {', '.join(missing)}). "
            "Run `npm ci` in the checkout (./scripts/serve does it) or set NODE_MODULES_DIR. "
            f"The OpenAPI document itself is at {request.app.openapi_url}.", status_code=503)
    nonce = secrets.token_urlsafe(18) if page.style_nonce else None
    response = TEMPLATES.TemplateResponse(request, "api_docs.html", {
        "title": f"tradeloop API · {page.title}",
        "openapi_url": request.app.openapi_url,
        "style_nonce": nonce,
        "stylesheets": [vendor_url(name, file) for name, file in page.stylesheets],
        "scripts": [*(vendor_url(name, file) for name, file in page.scripts), page.initialiser],
    })
    if nonce or page.csp:
        response.headers["content-security-policy"] = _page_policy(page, nonce)
    return response


def _page_policy(page: DocsPage, nonce: str | None) -> str:
    overrides = dict(page.csp)
    if nonce:
        overrides["style-src"] = " ".join(("'self'", f"'nonce-{nonce}'",
                                           *REDOC_SCROLLBAR_CSS_HASHES))
    return content_security_policy(overrides)
