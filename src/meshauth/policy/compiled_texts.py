"""Compiled policy texts shared between stores: one compile per distinct (text, schema) in a process.

One store per tenant often means the same policy text in every store (one template per tenant).
Each store used to compile its own copy: a thousand compiles when a restarted worker loads a
thousand stores, and a thousand compiled sets in memory, spread over a thousand times the memory
that decisions touch. What a text compiles to depends only on the text, the schema and the index
settings (fixed per process), so stores with equal ones share it: the state (store name, revision,
entities version) stays per store, the compiled set, its index and the index's subset cache are one
object. Decisions are unchanged: they read nothing else from the compiled text.

An entry lives as long as a loaded store (or an admin write in flight) holds it: the map holds weak
references, so there is nothing to bound or expire. Concurrent loads of one text compile it once.
A text that cannot be served raises :class:`~meshauth.policy.servable.Unservable` to every caller
and is not remembered (the next load tries again, as before).
"""

from __future__ import annotations

import functools
import hashlib
import weakref
from collections.abc import Sequence

from meshauth.policy.cedar import compile_thread
from meshauth.policy.index import Key
from meshauth.policy.servable import checked
from meshauth.policy.source_limits import Limits
from meshauth.policy.state import CompiledText, IndexSettings, compile_text
from meshauth.singleflight import SingleFlight

# SHA-256 of the policy text and of the schema text, and the schema format: each part hashed on its
# own (no delimiter to forge), and a digest rather than the text so the map does not keep a
# 100,000-policy text (16 MB) alive beside its compiled form.
TextKey = tuple[bytes, bytes | None, str | None]


def _key(text: str, schema_text: str | None, schema_format: str | None) -> TextKey:
    schema = hashlib.sha256(schema_text.encode()).digest() if schema_text is not None else None
    return hashlib.sha256(text.encode()).digest(), schema, schema_format


class CompiledTexts:
    def __init__(self, *, index: IndexSettings, limits: Limits) -> None:
        self._index = index
        self._limits = limits
        self._texts: weakref.WeakValueDictionary[TextKey, CompiledText] = weakref.WeakValueDictionary()
        self._compiling: SingleFlight[TextKey, CompiledText] = SingleFlight()
        self.compiles = 0  # texts compiled (tests, and the performance notes)
        self.shared = 0  # loads that found their text compiled already

    def __len__(self) -> int:
        return len(self._texts)

    async def get(
        self, text: str, schema_text: str | None, schema_format: str | None, *, hot_keys: Sequence[Key] = ()
    ) -> CompiledText:
        """``text`` compiled under the schema, behind the upload limits, on an engine thread; or the
        compiled text another store (or a load in flight) already has. ``hot_keys`` are compiled
        ahead when this call compiles (a shared index is already warm for the keys its stores ask)."""
        key = _key(text, schema_text, schema_format)
        found = self._texts.get(key)
        if found is not None:
            self.shared += 1
            return found

        async def compile_once() -> CompiledText:
            again = self._texts.get(key)  # compiled while this call waited to start
            if again is not None:
                return again
            compile_one = functools.partial(
                compile_text, schema_text=schema_text, schema_format=schema_format, index=self._index, hot_keys=hot_keys
            )
            compiled = await compile_thread(checked, compile_one, text, self._limits)
            self.compiles += 1
            self._texts[key] = compiled
            return compiled

        return await self._compiling.do(key, compile_once)
