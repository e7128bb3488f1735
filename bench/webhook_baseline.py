"""The framework ceiling for bench/webhook.py: a bare FastAPI endpoint on uvicorn that reads
the same signal body, parses its JSON and answers 200 with a webhook-shaped answer.

    python bench/webhook_baseline.py --port 8100

uvicorn runs exactly as `tradeloop serve` runs it (one process; loop and http left to
uvicorn's "auto", i.e. uvloop and httptools when installed; proxy headers on; no access
log config), so the difference to tradeloop's /webhook is what tradeloop does per request.
"""

from __future__ import annotations

import argparse
import json
import time

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI()


@app.post("/webhook")
async def webhook(request: Request) -> JSONResponse:
    started = time.perf_counter()
    payload = json.loads(await request.body())
    return JSONResponse({"status": "ACCEPTED", "message": f"parsed {len(payload)} fields",
                         "processing_time_ms": round((time.perf_counter() - started) * 1000, 2)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    # The same uvicorn.run options as tradeloop.cli.serve (single worker).
    uvicorn.run(app, host=args.host, port=args.port, proxy_headers=True, log_config=None)


if __name__ == "__main__":
    main()
