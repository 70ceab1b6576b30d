"""The world-model response cache: keys, modes, counters, persistence, concurrent writers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

from simrl.errors import SimrlError
from simrl.wm.backend import BackendError, Sampling
from simrl.wm.cache import ResponseCache, cache_key

MESSAGES = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]


def test_key_covers_backend_model_messages_and_sampling():
    base = cache_key("openai", "m", MESSAGES, Sampling())
    assert base == cache_key("openai", "m", [dict(m) for m in MESSAGES], Sampling())
    assert len(base) == 64
    others = [cache_key("llamacpp", "m", MESSAGES, Sampling()), cache_key("openai", "m2", MESSAGES, Sampling()),
              cache_key("openai", "m", MESSAGES[:1], Sampling()),
              cache_key("openai", "m", MESSAGES, Sampling(temperature=0.5)),
              cache_key("openai", "m", MESSAGES, Sampling(seed=1))]
    assert len({base, *others}) == 6


def test_read_write_counts_and_persists(tmp_path):
    cache = ResponseCache(tmp_path / "c")
    assert cache.get("k") is None and (cache.hits, cache.misses) == (0, 1)
    cache.put("k", "first", "openai", "m")
    cache.put("k", "second")  # the first response stored for a key stays
    assert cache.get("k") == "first" and (cache.hits, cache.misses) == (1, 1)
    assert cache.stats() == {"mode": "read_write", "path": str(tmp_path / "c" / "responses.sqlite"),
                             "hits": 1, "misses": 1}
    cache.close()
    cache.close()
    again = ResponseCache(tmp_path / "c")
    assert again.get("k") == "first" and len(again) == 1


def test_replay_reads_only_and_a_miss_is_not_retryable(tmp_path):
    with pytest.raises(SimrlError, match="no response cache"):
        ResponseCache(tmp_path / "none", "replay")
    ResponseCache(tmp_path / "c").put("k", "stored")
    replay = ResponseCache(tmp_path / "c", "replay")
    assert replay.get("k") == "stored"
    replay.put("new", "x")
    with pytest.raises(BackendError, match="replay mode") as err:
        replay.get("new")
    assert err.value.retryable is False and (replay.hits, replay.misses) == (1, 1)


def test_off_stores_nothing(tmp_path):
    off = ResponseCache.off()
    off.put("k", "v")
    assert off.get("k") is None and len(off) == 0 and off.stats()["path"] is None
    with pytest.raises(SimrlError, match="cache mode"):
        ResponseCache(tmp_path, "sometimes")  # type: ignore[arg-type]


def test_concurrent_threads_and_processes(tmp_path):
    path = tmp_path / "shared"
    ResponseCache(path).close()
    writer = textwrap.dedent(f"""
        from simrl.wm.cache import ResponseCache
        import sys
        c = ResponseCache({str(path)!r})
        for i in range(40):
            c.put(f"{{sys.argv[1]}}-{{i}}", "v")
            assert c.get(f"{{sys.argv[1]}}-{{i}}") == "v"
    """)
    procs = [subprocess.Popen([sys.executable, "-c", writer, f"p{n}"]) for n in range(3)]
    cache = ResponseCache(path)

    def put_many(n: int) -> None:
        for i in range(40):
            cache.put(f"t{n}-{i}", "v")
            assert cache.get(f"t{n}-{i}") == "v"

    threads = [threading.Thread(target=put_many, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(p.wait(timeout=60) == 0 for p in procs)
    assert len(cache) == 7 * 40
