"""The body-reading floor as a WSGI app under granian (one Python hop per request: the blocking
thread runs the app; no event loop). For comparison with bench.policy_floor (RSGI) only."""
_ANSWER = b'{"decision":true,"context":{"revision":1,"policies":[],"errors":[]}}'


def app(environ, start_response):
    n = int(environ.get("CONTENT_LENGTH") or 0)
    environ["wsgi.input"].read(n)
    start_response("200 OK", [("content-type", "application/json")])
    return [_ANSWER]


def create_app():
    return app


if __name__ == "__main__":
    import sys

    from granian.constants import HTTPModes, Interfaces
    from granian.server import Server

    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    Server("wsgi_floor:create_app", address="127.0.0.1", port=int(sys.argv[1]), interface=Interfaces.WSGI,
           http=HTTPModes.http1, factory=True, log_access=False).serve()
