# ruff: noqa: F821  (`api` is injected by the engine)
import json
import os
import pickle
import time

INTERVAL = float(api.config.interval)
FAULT_AT = int(api.config.fault_at)
TOTAL = int(api.config.total)
OUT = api.config.out_dir
offset = 0
restored = False
epoch_done = False
t_restore = None
t_first_publish = None


def tick():
    global offset, t_first_publish
    if offset >= TOTAL:
        return -1
    if not restored and offset == FAULT_AT - 1 and not epoch_done:
        return 0.01  # hold the failing message until a snapshot is complete
    if t_first_publish is None:
        t_first_publish = time.monotonic()
    api.outputs.out.publish(api.Table([[offset, time.monotonic()]]))
    offset += 1
    return 0 if restored else INTERVAL


def epoch_complete(epoch):
    global epoch_done
    epoch_done = True


def restore(epoch, state):
    global offset, restored, t_restore
    t_restore = time.monotonic()
    offset = pickle.loads(state)
    restored = True


api.add_timer(tick)
api.set_initial_snapshot_info(api.InitialProcessInfo(
    is_stateful=True, outports_info={"out": api.OutportInfo(is_generator=True)}))
api.set_serialize_callback(lambda epoch: pickle.dumps(offset))
api.set_restore_callback(restore)
api.set_epoch_complete_callback(epoch_complete)


def shutdown():
    report = {"role": "rec_gen", "pid": os.getpid(), "restored": restored, "t_restore": t_restore,
              "t_first_publish": t_first_publish, "offset": offset}
    with open(os.path.join(OUT, f"rec_gen-{os.getpid()}-{time.monotonic_ns()}.json"), "w") as f:
        json.dump(report, f)


api.set_shutdown(shutdown)
