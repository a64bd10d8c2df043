# Generator of W1/W2: N rows [i, i*7 % 1000, "row<i>"] in api.Tables of B rows, one table per timer tick.
# With stateful=true its offset is the snapshot state (a replayable generator).
# ruff: noqa: F821  (`api` is injected by the engine)
import pickle
import time

from bench_report import write_report

if api.config.gc_threshold:  # what-if experiment of bench/run.py (section GC); off by default
    import gc

    gc.set_threshold(*(int(v) for v in str(api.config.gc_threshold).split(",")))

N = int(api.config.rows)
B = int(api.config.batch)
OUT = api.config.out_dir
offset = 0
tables = 0
t_first = None


def tick():
    global offset, tables, t_first
    if t_first is None:
        t_first = time.monotonic()
    start = offset
    if start >= N:
        return -1
    stop = min(N, start + B)
    api.outputs.out.publish(api.Table([[i, i * 7 % 1000, f"row{i}"] for i in range(start, stop)]))
    offset = stop
    tables += 1
    return 0 if stop < N else -1


api.add_timer(tick)

if str(api.config.stateful).lower() == "true":
    api.set_initial_snapshot_info(api.InitialProcessInfo(
        is_stateful=True, outports_info={"out": api.OutportInfo(is_generator=True)}))
    api.set_serialize_callback(lambda epoch: pickle.dumps(offset))

    def restore(epoch, state):
        global offset
        offset = pickle.loads(state)

    api.set_restore_callback(restore)


def shutdown():
    write_report(OUT, "gen", group=api.group_id, t_first=t_first, offset=offset, tables=tables)


api.set_shutdown(shutdown)
