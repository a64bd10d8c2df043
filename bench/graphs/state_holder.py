# ruff: noqa: F821  (`api` is injected by the engine)
import random

SIZE = int(api.config.size)
state = random.randbytes(SIZE)  # incompressible, built once at load


def tick():
    return 0.05  # keep the graph alive until --stop-after


api.add_timer(tick)
api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))
api.set_serialize_callback(lambda epoch: state)


def restore(epoch, data):
    global state
    state = data


api.set_restore_callback(restore)
