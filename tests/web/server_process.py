"""`python -m tests.web.server_process DATA_DIR OVERRIDES_JSON FD`: the app under uvicorn in a
process of its own, serving the listening socket FD it inherits (see
`tests.web.conftest.start_server_process`)."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import uvicorn

from tests.conftest import make_settings
from tradeloop.app import create_app
from tradeloop.db import Database


def main() -> None:
    data_dir, overrides, fd = Path(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
    settings = make_settings(data_dir, **overrides)
    app = create_app(settings, Database.from_url(settings.effective_database_url))
    config = uvicorn.Config(app, log_config=None, access_log=False, proxy_headers=True,
                            forwarded_allow_ips="127.0.0.1", lifespan="on")
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=fd)])


if __name__ == "__main__":
    main()
