"""Trainers: each trains one arm x seed of a recipe into a run folder, the same way.

* :mod:`simrl.trainers.lifecycle` — what every trainer shares and uses: start and resume
  (``begin_run``), ``metrics.jsonl`` lines (``StepMetrics``), the held-out evaluation (``evaluate``),
  ``summary.json`` (``finish_run``). No trainer imports another trainer's module.
* :mod:`simrl.trainers.embedded` — ``trainer.kind: embedded``: GRPO on CPU for the scorer policy
  (:mod:`simrl.policies.scorer`), one file: group-relative advantages over ``group_size`` episodes of the
  same task, environment failures excluded from the signal, checkpoints and resume (+ :mod:`simrl.trainers.credit`,
  its advantages, and :mod:`simrl.trainers.warm_start`, its warm start and the pool its tasks are drawn from).
* :mod:`simrl.trainers.trl` (+ :mod:`simrl.trainers.trl_rollout`) — ``trainer.kind: trl``: an LLM policy
  (:class:`~simrl.policies.hf_policy.HFPolicy`) trained by TRL's GRPO on one node.
* :mod:`simrl.trainers.verl` — ``trainer.kind: verl``: a verl job folder per run (datasets, tool config,
  Hydra overrides, ``command.sh``), run locally or submitted to Ray; the tools step simrl environments.

The recipe, run folders, evaluation and ablations they serve are :mod:`simrl.experiment`.
"""
