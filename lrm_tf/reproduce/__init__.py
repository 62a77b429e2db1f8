"""One command per paper table (`--mode=reproduce`): the plan of runs a table needs, in dependency
order, run, resumed and laid out as the paper lays it out.

Layers, each a module: `catalogue` (which flagfiles make a table and what each needs first, read
from flags/ and lrm_tf/report/published.json), `plan` (each run's status on disk, command,
reduced-scale arguments and estimated cost), `runner` (runs what is missing: several workers,
several hosts by sharding, a failed row reported and the rest still run) and `layout` (the
table, ours beside the published number in every cell). No TensorFlow is imported except to
estimate costs (`plan.estimate_hours`).
"""

from lrm_tf.reproduce.catalogue import Job, jobs_for, tables
from lrm_tf.reproduce.plan import PlannedRun, make_plan, plan_markdown
from lrm_tf.reproduce.runner import reproduce, run_plan

__all__ = ["Job", "PlannedRun", "jobs_for", "make_plan", "plan_markdown", "reproduce", "run_plan", "tables"]
