"""Encoding micro-benchmark: a 1000-row table of (int, int, str) rows crossing a process boundary.

    bench/.venv/bin/python bench/encoding.py [--tables M] [--seconds S] [--json OUT]

Two parts:

1. **encode + decode in one process**, per format: tables/s, rows/s and bytes per table.
   Formats: pickle protocol 5; msgpack (msgpack-python); snapgraph's wire codec (ormsgpack,
   exact types only: ``runtime.codec.pack_rows``/``unpack_rows``); Arrow IPC (pyarrow) back to
   Python row lists, and Arrow IPC to a RecordBatch only (columnar, no Python row objects);
   shared memory = pickle 5 copied into a shared-memory slot and unpickled from it (what a
   receiver in another process does).
2. **end to end between two processes**: the sender encodes M tables and writes them to a
   ``multiprocessing.Pipe`` (an os.pipe underneath, ``send_bytes``/``recv_bytes``); the receiver
   decodes each one to Python rows and checks a sum. Shared memory: the sender writes into one of
   a ring of slots and sends only (slot, length) over the pipe; the receiver unpickles from the
   slot and hands the slot back over a second pipe (credit-based flow control).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import pickle
import statistics
import struct
import sys
import time
from collections.abc import Callable
from multiprocessing import shared_memory
from typing import Any

ROWS = 1000

try:
    import msgpack
except ImportError:  # pragma: no cover - bench/setup.sh installs it
    msgpack = None
try:
    import ormsgpack

    from snapgraph.runtime.codec import pack_rows, unpack_rows
except ImportError:  # pragma: no cover - snapgraph depends on ormsgpack
    ormsgpack = None
try:
    import pyarrow as pa
    import pyarrow.ipc  # noqa: F401
except ImportError:  # pragma: no cover
    pa = None


def make_table(seed: int = 0) -> list[list[Any]]:
    base = seed * ROWS
    return [[i, i * 7 % 1000, f"row{i}"] for i in range(base, base + ROWS)]


# -- formats: (encode(rows) -> bytes-like, decode(bytes-like) -> rows) -----------------------------
def pickle_encode(rows: list) -> bytes:
    return pickle.dumps(rows, protocol=5)


def pickle_decode(data: Any) -> list:
    return pickle.loads(data)


def msgpack_encode(rows: list) -> bytes:
    return msgpack.packb(rows)


def msgpack_decode(data: Any) -> list:
    return msgpack.unpackb(data)


_SCHEMA = None


def arrow_encode(rows: list) -> Any:
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = pa.schema([("x", pa.int64()), ("y", pa.int64()), ("z", pa.string())])
    xs, ys, zs = zip(*rows)
    batch = pa.record_batch([pa.array(xs, pa.int64()), pa.array(ys, pa.int64()), pa.array(zs, pa.string())],
                            schema=_SCHEMA)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, _SCHEMA) as writer:
        writer.write_batch(batch)
    return sink.getvalue()  # a pyarrow Buffer (supports the buffer protocol)


def arrow_decode_batch(data: Any) -> Any:
    return pa.ipc.open_stream(data).read_next_batch()


def arrow_decode(data: Any) -> list:
    batch = arrow_decode_batch(data)
    return [list(r) for r in zip(*(c.to_pylist() for c in batch.columns))]


def _nbytes(data: Any) -> int:
    return data.size if pa is not None and isinstance(data, pa.Buffer) else len(data)


def formats() -> dict[str, tuple[Callable[[list], Any], Callable[[Any], Any]]]:
    found: dict[str, tuple[Callable[[list], Any], Callable[[Any], Any]]] = {
        "pickle5": (pickle_encode, pickle_decode)}
    if msgpack is not None:
        found["msgpack"] = (msgpack_encode, msgpack_decode)
    if ormsgpack is not None:
        found["snapgraph wire (ormsgpack)"] = (pack_rows, unpack_rows)
    if pa is not None:
        found["arrow-ipc (to rows)"] = (arrow_encode, arrow_decode)
        found["arrow-ipc (batch only)"] = (arrow_encode, arrow_decode_batch)
    return found


# -- part 1: encode + decode in one process -------------------------------------------------------
def measure_codec(name: str, encode: Callable, decode: Callable, tables: list[list], seconds: float) -> dict:
    data = encode(tables[0])
    check = decode(data)
    if name != "arrow-ipc (batch only)":
        assert check == tables[0], f"{name}: round trip changed the table"

    def timed(fn: Callable[[], None]) -> float:
        best = []
        for _ in range(5):  # 5 slices; the median slice rate
            n = 0
            t0 = time.perf_counter()
            while True:
                fn()
                n += 1
                if time.perf_counter() - t0 >= seconds / 5:
                    break
            best.append(n / (time.perf_counter() - t0))
        return statistics.median(best)

    encoded = [encode(t) for t in tables]
    i = 0

    def enc() -> None:
        nonlocal i
        encode(tables[i % len(tables)])
        i += 1

    def dec() -> None:
        nonlocal i
        decode(encoded[i % len(encoded)])
        i += 1

    def both() -> None:
        nonlocal i
        decode(encode(tables[i % len(tables)]))
        i += 1

    enc_rate, dec_rate, both_rate = timed(enc), timed(dec), timed(both)
    return {"format": name, "bytes": _nbytes(data), "encode_tables_s": enc_rate, "decode_tables_s": dec_rate,
            "roundtrip_tables_s": both_rate, "roundtrip_rows_s": both_rate * ROWS,
            "roundtrip_us": 1e6 / both_rate}


def measure_shm_codec(tables: list[list], seconds: float) -> dict:
    slot = 1 << 16
    shm = shared_memory.SharedMemory(create=True, size=len(tables) * slot)
    turn = 0

    def encode(rows: list) -> tuple[int, int]:
        nonlocal turn
        data = pickle.dumps(rows, protocol=5)
        off = (turn % len(tables)) * slot
        turn += 1
        shm.buf[off:off + len(data)] = data
        return off, len(data)

    def decode(where: tuple[int, int]) -> list:
        off, n = where
        return pickle.loads(shm.buf[off:off + n])

    try:
        result = measure_codec("shared memory (pickle5 in a slot)", encode, decode, tables, seconds)
        result["bytes"] = len(pickle.dumps(tables[0], protocol=5))
        return result
    finally:
        shm.close()
        shm.unlink()


# -- part 2: end to end between two processes -----------------------------------------------------
def _receiver_pipe(conn: Any, fmt: str, n: int, done: Any) -> None:
    decode = formats()[fmt][1]
    count = total = 0
    for _ in range(n):
        rows = decode(conn.recv_bytes())
        count += len(rows)
        total += rows[-1][0] if fmt != "arrow-ipc (batch only)" else rows.column(0)[-1].as_py()
    done.send((count, total))


def _receiver_shm(conn: Any, credits: Any, name: str, slot: int, n: int, done: Any) -> None:
    shm = shared_memory.SharedMemory(name=name)
    buf = shm.buf
    count = total = 0
    for _ in range(n):
        index, length = struct.unpack("<II", conn.recv_bytes())
        off = index * slot
        rows = pickle.loads(buf[off:off + length])
        credits.send_bytes(struct.pack("<I", index))
        count += len(rows)
        total += rows[-1][0]
    done.send((count, total))
    del buf
    shm.close()


def end_to_end(fmt: str, tables: list[list], m: int) -> dict:
    ctx = mp.get_context("fork")
    recv_end, send_end = ctx.Pipe(duplex=False)
    done_recv, done_send = ctx.Pipe(duplex=False)
    expected_total = sum(tables[i % len(tables)][-1][0] for i in range(m))
    if fmt == "shared memory":
        slots, slot = 16, 1 << 16
        shm = shared_memory.SharedMemory(create=True, size=slots * slot)
        credit_recv, credit_send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_receiver_shm, args=(recv_end, credit_send, shm.name, slot, m, done_send))
        proc.start()
        buf = shm.buf
        free = list(range(slots))
        nbytes = 0
        t0 = time.perf_counter()
        for i in range(m):
            data = pickle.dumps(tables[i % len(tables)], protocol=5)
            while not free:
                free.append(struct.unpack("<I", credit_recv.recv_bytes())[0])
            index = free.pop()
            off = index * slot
            buf[off:off + len(data)] = data
            nbytes += len(data)
            send_end.send_bytes(struct.pack("<II", index, len(data)))
        count, total = done_recv.recv()
        elapsed = time.perf_counter() - t0
        proc.join()
        del buf
        shm.close()
        shm.unlink()
    else:
        encode = formats()[fmt][0]
        proc = ctx.Process(target=_receiver_pipe, args=(recv_end, fmt, m, done_send))
        proc.start()
        nbytes = 0
        t0 = time.perf_counter()
        for i in range(m):
            data = encode(tables[i % len(tables)])
            nbytes += _nbytes(data)
            send_end.send_bytes(data)
        count, total = done_recv.recv()
        elapsed = time.perf_counter() - t0
        proc.join()
    if count != m * ROWS or total != expected_total:
        raise AssertionError(f"{fmt}: receiver got {count} rows / {total}, expected {m * ROWS} / {expected_total}")
    return {"format": fmt, "tables": m, "seconds": elapsed, "tables_s": m / elapsed, "rows_s": m * ROWS / elapsed,
            "mb_s": nbytes / elapsed / 1e6, "bytes_per_table": nbytes / m}


def run(m: int, seconds: float) -> dict:
    tables = [make_table(s) for s in range(16)]
    codecs = [measure_codec(name, enc, dec, tables, seconds) for name, (enc, dec) in formats().items()]
    codecs.append(measure_shm_codec(tables, seconds))
    e2e = [end_to_end(name, tables, m) for name in formats()]
    e2e.append(end_to_end("shared memory", tables, m))
    # the floor: building the same tables in the sender without sending them anywhere
    t0 = time.perf_counter()
    for s in range(m):
        make_table(s % 16)
    build = m / (time.perf_counter() - t0)
    return {"codecs": codecs, "end_to_end": e2e, "build_tables_s": build,
            "versions": {"msgpack": getattr(msgpack, "version", None) and ".".join(map(str, msgpack.version)),
                         "ormsgpack": getattr(ormsgpack, "__version__", None),
                         "pyarrow": getattr(pa, "__version__", None)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=2000, help="tables sent end to end per format")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per codec measurement")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    result = run(args.tables, args.seconds)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)
    else:
        json.dump(result, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
