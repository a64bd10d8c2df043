# ruff: noqa: F821  (`api` is injected by the engine)
import json
import os
import struct
import time

SIZE = max(int(api.config.size), 16)
OUT = api.config.out_dir
count = 0
last_seq = -1
padding = bytes(SIZE - 16)  # the rest of the state; zero-filled so loading it is cheap
restored = False
t_restore = None
t_first_message = None
first_seq = None


def on_input(msg_id, header, body):
    global count, last_seq, t_first_message, first_seq
    now = time.monotonic()
    if t_first_message is None:
        t_first_message, first_seq = now, body.get()[0][0]
    for seq, _sent in body.get():
        count += 1
        last_seq = seq


def serialize(epoch):
    return struct.pack("<qq", count, last_seq) + padding


def restore(epoch, state):
    global count, last_seq, padding, restored, t_restore
    t_restore = time.monotonic()
    count, last_seq = struct.unpack("<qq", state[:16])
    padding = state[16:]
    restored = True


api.set_port_callback("in", on_input)
api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))
api.set_serialize_callback(serialize)
api.set_restore_callback(restore)


def shutdown():
    t_shutdown = time.monotonic()  # after a failure this runs right after it, on the same thread
    report = {"role": "rec_sink", "pid": os.getpid(), "restored": restored, "t_restore": t_restore,
              "t_first_message": t_first_message, "first_seq": first_seq, "t_shutdown": t_shutdown,
              "count": count, "last_seq": last_seq, "state_bytes": 16 + len(padding)}
    with open(os.path.join(OUT, f"rec_sink-{os.getpid()}-{time.monotonic_ns()}.json"), "w") as f:
        json.dump(report, f)


api.set_shutdown(shutdown)
