"""Cohorts: many slides predicted on a Dask cluster (local worker processes or an existing scheduler).

``cluster.py`` connects (`cohort_client`), ``run.py`` plans and runs (`plan_cohort`, `run_cohort`),
``task.py`` is what a worker runs for one slide, ``outputs.py`` writes a slide's folder (shared with the
one-process ``biopsia predict``) and ``results.py`` tells which slides are done for a model.
"""

from core.cohort.outputs import GRID_FILE, PredictOptions, predict_to_folder, unique_names
from core.cohort.results import done_with, weights_sha256
from core.cohort.run import CohortPlan, CohortResult, plan_cohort, run_cohort

__all__ = ["GRID_FILE", "CohortPlan", "CohortResult", "PredictOptions", "done_with", "plan_cohort",
           "predict_to_folder", "run_cohort", "unique_names", "weights_sha256"]
