"""What every operator of the benchmark graphs writes at shutdown: its numbers, its process's memory
and the CPU time of every thread in its process (imported by the scripts beside this file)."""
import json
import os
import resource
import threading
import time


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each live thread of this process, by thread name."""
    found = {}
    for thread in threading.enumerate():
        try:
            clock = time.pthread_getcpuclockid(thread.ident)
            found[thread.name] = round(time.clock_gettime(clock), 4)
        except (OSError, TypeError, AttributeError):
            pass
    return found


def write_report(out_dir: str, role: str, **fields) -> None:
    report = {"role": role, "pid": os.getpid(), "process_cpu_s": round(time.process_time(), 4),
              "thread_cpu_s": thread_cpu(), "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
              **fields}
    with open(os.path.join(out_dir, f"{role}-{os.getpid()}-{time.monotonic_ns()}.json"), "w") as f:
        json.dump(report, f)
