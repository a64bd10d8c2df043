# Processing of W1/W2: keep rows with y % 3 != 0 and add y2 = 2*y.
# W2 (hash_rounds >= 1) also hashes z with sha256 (hash_rounds rounds) and keeps the first digest byte.
# ruff: noqa: F821  (`api` is injected by the engine)
import hashlib

from bench_report import write_report

if api.config.gc_threshold:  # what-if experiment of bench/run.py (section GC); off by default
    import gc

    gc.set_threshold(*(int(v) for v in str(api.config.gc_threshold).split(",")))

ROUNDS = int(api.config.hash_rounds)
OUT = api.config.out_dir
sha256 = hashlib.sha256
tables = 0


def heavy(z):
    d = z.encode()
    for _ in range(ROUNDS):
        d = sha256(d).digest()
    return d[0]


def on_input(msg_id, header, body):
    global tables
    rows = body.get()
    if ROUNDS == 0:
        out = [[x, y, z, 2 * y] for x, y, z in rows if y % 3]
    elif ROUNDS == 1:
        out = [[x, y, z, 2 * y, sha256(z.encode()).digest()[0]] for x, y, z in rows if y % 3]
    else:
        out = [[x, y, z, 2 * y, heavy(z)] for x, y, z in rows if y % 3]
    api.outputs.out.publish(api.Table(out))
    tables += 1


api.set_port_callback("in", on_input)


def shutdown():
    write_report(OUT, "proc", group=api.group_id, tables=tables)


api.set_shutdown(shutdown)
