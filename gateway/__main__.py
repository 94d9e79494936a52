"""Run the gateway: `python -m gateway --port 8080` (config from LONGTAIL_* env)."""
import argparse

import uvicorn

from gateway.app import create_app
from longtail_common.config import load_config
from longtail_common.runtime import setup_logging


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    setup_logging("gateway")
    cfg = load_config()
    app = create_app(cfg)
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False,
                timeout_graceful_shutdown=5, timeout_keep_alive=cfg.http.keep_alive_timeout_s,
                # The client address is limits.trusted_proxies' business (gateway/ratelimit.py).
                proxy_headers=False)


main()
