"""The floor: a minimal pass-through proxy (aiohttp server and client on uvloop).

It forwards the body to the upstream and the answer back, and does nothing else.
Whatever the gateway adds beyond this is the gateway's own cost.

    python benchmarks/floor_proxy.py --port 9100 --upstream http://127.0.0.1:9000
"""

import argparse

import aiohttp
import uvloop
from aiohttp import web


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()

    async def session_context(app: web.Application):
        app["client"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        yield
        await app["client"].close()

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        async with request.app["client"].post(args.upstream + request.path, data=body,
                                              headers={"content-type": "application/json"}
                                              ) as upstream:
            return web.Response(body=await upstream.read(), status=upstream.status,
                                content_type="application/json")

    app = web.Application()
    app.cleanup_ctx.append(session_context)
    app.router.add_post("/{tail:.*}", forward)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None,
                print=lambda *_: None)


if __name__ == "__main__":
    main()
