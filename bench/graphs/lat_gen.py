# ruff: noqa: F821  (`api` is injected by the engine)
import time

COUNT = int(api.config.count)
INTERVAL = 1.0 / float(api.config.rate)
seq = 0


def tick():
    global seq
    api.outputs.out.publish(api.Table([[seq, time.monotonic()]]))
    seq += 1
    return INTERVAL if seq < COUNT else -1


api.add_timer(tick)


def shutdown():
    import json
    import os

    with open(os.path.join(api.config.out_dir, f"lat_gen-{os.getpid()}-{time.monotonic_ns()}.json"), "w") as f:
        json.dump({"role": "lat_gen", "pid": os.getpid(), "sent": seq}, f)


api.set_shutdown(shutdown)
