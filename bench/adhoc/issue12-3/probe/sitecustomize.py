# issue 12 (audit3) scratch probe: gc pauses, flush-side synchronous stretches, in the served worker.
import gc
import json
import os
import time

_pc = time.perf_counter
_stats: dict = {}
_t0 = [0.0]
_last = [time.monotonic()]


def _rec(name, dt):
    s = _stats.get(name)
    if s is None:
        s = _stats[name] = [0, 0.0, 0.0, 0]  # count, total, max, over 200us
    s[0] += 1
    s[1] += dt
    if dt > s[2]:
        s[2] = dt
    if dt > 200e-6:
        s[3] += 1
    now = time.monotonic()
    if now - _last[0] > 1.0:
        _last[0] = now
        os.makedirs("/tmp/audit3-probe", exist_ok=True)
        with open(f"/tmp/audit3-probe/{os.getpid()}.json", "w") as f:
            json.dump(_stats, f)


def _gc(phase, info):
    if phase == "start":
        _t0[0] = _pc()
    else:
        _rec(f"gc{info['generation']}", _pc() - _t0[0])


gc.callbacks.append(_gc)

try:
    import meshauth.bus.producer as _p
    import meshauth.bus.writer as _w

    def _wrap(cls, name):
        orig = getattr(cls, name)

        def f(*a, **k):
            t = _pc()
            try:
                return orig(*a, **k)
            finally:
                _rec(name, _pc() - t)

        setattr(cls, name, f)

    _wrap(_p.Producer, "_take")
    _wrap(_w.StreamWriter, "_packed")
    _wrap(_p.Producer, "_append")
except Exception as exc:  # noqa: BLE001
    print("probe: no bus", exc)

# Diagnostic variants (env AUDIT3_VARIANT): noxadd — the flush's script stores nothing (Valkey's per-event
# work gone, the bytes still sent); cheaptake — each template stamped once and reused (the flush's
# per-event Python work mostly gone; ids repeat: a diagnostic only).
_variant = os.environ.get("AUDIT3_VARIANT", "")
if _variant == "noxadd":
    _w.XADD_MANY = "return #KEYS"
elif _variant == "cheaptake":
    from meshauth.bus.events import stamp as _stamp

    _cache: dict = {}

    def _take(self, n):
        buf, partition = self._buffer, self._writer.partition
        out = []
        for _ in range(min(n, len(buf))):
            stream, key, data = buf.popleft()
            tpl = data[0]
            b = _cache.get(tpl)
            if b is None:
                b = _cache[tpl] = _stamp(*data)
            out.append((partition(stream, key), b))
        return out

    _p.Producer._take = _take
elif _variant == "nopub":
    _p.Producer.publish_template = lambda self, stream, key, tpl, at: True
elif _variant == "onebatch":
    # One XADD per partition per flush carrying the flush's events of that partition (concatenated): the
    # Valkey-side cost of a batch-entry format, for the gate's benchmark only (nothing reads these).
    _orig_packed = _w.StreamWriter._packed

    def _packed(self, keys, records):
        by: dict = {}
        for key, data in records:
            by.setdefault(key, []).append(data)
        ks = list(by)
        return _orig_packed(self, ks, [(k, b"".join(v)) for k, v in by.items()])

    _w.StreamWriter._packed = _packed
