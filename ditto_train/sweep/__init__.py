"""``ditto-bench sweep``: the cross-supervision grid (paper §6, Figure 5) as a DAG of standalone stages.

Modules: :mod:`.spec` (the sweep file and the cluster profile), :mod:`.plan` (stages, commands,
fingerprints), :mod:`.state` (when a stage is done), :mod:`.stage_exec` (runs one stage command, on any
executor), :mod:`.executors` (local, ray, slurm), :mod:`.driver` (scheduling, ``sweep.json``, failures),
:mod:`.grid` and :mod:`.figures` (``grid.csv``, ``grid.md``, Figure 5), :mod:`.board` (leaderboard rows).
"""
