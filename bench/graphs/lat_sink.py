# ruff: noqa: F821  (`api` is injected by the engine)
import json
import os
import time

OUT = api.config.out_dir
latencies = []


def on_input(msg_id, header, body):
    now = time.monotonic()
    for _seq, sent in body.get():
        latencies.append(now - sent)


api.set_port_callback("in", on_input)


def shutdown():
    with open(os.path.join(OUT, f"lat_sink-{os.getpid()}-{time.monotonic_ns()}.json"), "w") as f:
        json.dump({"role": "lat_sink", "pid": os.getpid(), "latencies": latencies}, f)


api.set_shutdown(shutdown)
