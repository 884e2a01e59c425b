import asyncio, time, os
HOLD = float(os.environ.get("HOLD_MS", "2")) / 1000
def busy():
    end = time.perf_counter() + HOLD
    while time.perf_counter() < end:
        pass
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})
    p = scope["path"]
    if p == "/hold":
        busy()
    elif p == "/yield":
        await asyncio.sleep(0)
        busy()
    elif p == "/soon":
        asyncio.get_running_loop().call_soon(busy)
    elif p == "/soon2":
        loop = asyncio.get_running_loop()
        loop.call_soon(loop.call_soon, busy)
    elif p == "/later":
        asyncio.get_running_loop().call_later(0.0002, busy)
