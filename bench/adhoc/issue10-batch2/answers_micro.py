"""The client's decoding of a 64-item ``evaluations`` answer: every item decoded and built (before)
vs items decoded raw and alike ones built once (``_answers._alike``), alternated, best of 5."""
import timeit

import msgspec

from meshauth import wire
from meshauth.client import Response
from meshauth.client._answers import item_decision, parse

body = msgspec.json.encode({"evaluations": [{"decision": True, "context": {
    "revision": 1, "policies": ["view-all"], "errors": [], "entities_version": 3}}] * 64})


def before():
    return [item_decision(d) for d in wire.decode_evaluations_response(body).evaluations]


def after():
    return parse("evaluations", Response(200, body), 64)


assert before() == after()
n = 3000
for f in (before, after, before, after):
    print(f.__name__, f"{min(timeit.repeat(f, number=n, repeat=5)) / n / 64 * 1e6:.3f} us per item")
