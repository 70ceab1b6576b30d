"""The experiment: recipes, run folders, the evaluation set, evaluation, ablations, reports and statistics.

Data flow: a recipe (:mod:`simrl.experiment.recipe`) -> one run folder per arm x seed
(:mod:`simrl.experiment.runs`, one writer each: :mod:`simrl.experiment.locks`), trained by a trainer of
:mod:`simrl.trainers` -> held-out REAL evaluation on a set fixed before the run
(:mod:`simrl.experiment.heldout` over :mod:`simrl.evaluation`, which sits below the trainers and this
package) -> the report. Each module's
docstring has the details:

* :mod:`simrl.experiment.recipe` — ``Recipe`` (pydantic): world, arms (real | world model | world model +
  schedule and mode), policy, trainer, budget, evaluation, seeds, ablation grid
  (:mod:`~simrl.experiment.recipe_arms`, :mod:`~simrl.experiment.recipe_training`,
  :mod:`~simrl.experiment.recipe_files`).
* :mod:`simrl.experiment.runs` — run folder layout, shared worlds, environments of an arm, checkpoints.
* :mod:`simrl.experiment.heldout` — a recipe's held-out evaluation sets (:mod:`simrl.evaluation.eval_set`:
  expert-solvable tasks, task properties), a run's learning curve, runs and baselines evaluated (each loaded by
  its trainer kind's ``load_policy`` hook; the baselines of :mod:`simrl.experiment.baselines`).
* :mod:`simrl.experiment.ablate`, :mod:`simrl.experiment.report` — arms x seeds orchestration (child processes: :mod:`simrl.experiment.children`),
  ``report.md`` / ``report.json`` / plots (:mod:`simrl.experiment.report_compare`: the preregistered
  primary comparison and the Holm-corrected secondary ones, as the typed results of
  :mod:`simrl.experiment.comparisons`; :mod:`simrl.experiment.stats`: t intervals and
  paired t tests over seeds via scipy.stats, Holm's correction, the task x seed stratified bootstrap).
* :mod:`simrl.experiment.tracking` — the run's copy of its metrics to trackio / wandb / tensorboard.

The trainable scorer policy and its candidates are in :mod:`simrl.policies` (:mod:`~simrl.policies.scorer`,
:mod:`~simrl.policies.candidates`, :mod:`~simrl.policies.features`).
"""
