# Sink of W1/W2: counts rows and sums y2; with stateful=true (count, sum) is the snapshot state.
# ruff: noqa: F821  (`api` is injected by the engine)
import pickle
import time

from bench_report import write_report

if api.config.gc_threshold:  # what-if experiment of bench/run.py (section GC); off by default
    import gc

    gc.set_threshold(*(int(v) for v in str(api.config.gc_threshold).split(",")))

OUT = api.config.out_dir
count = 0
total = 0
tables = 0
t_last = None


def on_input(msg_id, header, body):
    global count, total, tables, t_last
    rows = body.get()
    count += len(rows)
    total += sum([r[3] for r in rows])
    tables += 1
    t_last = time.monotonic()


api.set_port_callback("in", on_input)

if str(api.config.stateful).lower() == "true":
    api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))
    api.set_serialize_callback(lambda epoch: pickle.dumps((count, total)))

    def restore(epoch, state):
        global count, total
        count, total = pickle.loads(state)

    api.set_restore_callback(restore)


def shutdown():
    write_report(OUT, "sink", group=api.group_id, count=count, total=total, tables=tables, t_last=t_last)


api.set_shutdown(shutdown)
