"""``snapgraph chaos``: a graph's delivery guarantee, proven on the graph itself.

A failure-free run of the user's graph is the reference; then seeded schedules of faults (exceptions,
process exits and engine kills at every protocol point, SIGKILL of group processes, SIGKILL, SIGTERM or a
second signal to the engine, each followed by ``--resume``) run it again, and each result is compared with
the reference. The graph always runs through the real ``snapgraph run`` command, as a subprocess, with a
snapshot store of its own per run (this package never imports the runtime).

* :mod:`~snapgraph.chaos.schedules`: the plans (a pure function of a seed and the graph's shape);
* :mod:`~snapgraph.chaos.processes`: the processes of an engine (its group processes, what it left behind);
* :mod:`~snapgraph.chaos.engine`: one ``snapgraph run`` subprocess, struck and waited for;
* :mod:`~snapgraph.chaos.steps`: carrying out one step and judging what the engine did;
* :mod:`~snapgraph.chaos.recorder`: ``--compare-sinks``, a copy of the graph whose writers' inputs are taped;
* :mod:`~snapgraph.chaos.compare`: the comparisons with the failure-free run (a check command, the taps);
* :mod:`~snapgraph.chaos.runner`: the reference run and the schedules, with the report
  (:mod:`~snapgraph.chaos.report`).

bench/campaign.py, the project's own crash / stop / damage campaign, runs its engine runs and judges its
fault, signal and kill steps through :mod:`~snapgraph.chaos.engine` and :mod:`~snapgraph.chaos.steps`.
"""
