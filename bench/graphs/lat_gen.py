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
