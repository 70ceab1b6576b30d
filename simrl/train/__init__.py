"""Training: recipes, the embedded CPU trainer (GRPO), the trainable policy, evaluation and ablations.

How the pieces fit (each module's docstring has the details):

* :mod:`simrl.policies.candidates` — ``candidate_actions(task_view, initial, turns) -> list[Action]``:
  the actions a small policy chooses among at a turn, built from the tool schemas and the values of the
  episode only (the prompt's, the results'), with recovery expressible (repeat, continue a cursor) and
  generic answers (values, count / sum / min / max / earliest / latest over the records seen).
  Deterministic: the same history gives the same list in the same order.
* :mod:`simrl.policies.scorer` — ``ScorerPolicy``: a DRRN-style scorer (He et al., 2016) that embeds the
  state text and each candidate's text (hashed n-gram bags), scores them by a dot product and samples
  from the softmax. It is a :class:`~simrl.rollout.Policy` (``async act``) and gives
  ``log_probs(trajectory, task_view)`` of a finished trajectory's actions for policy-gradient updates.
  ``behaviour_cloning`` is the supervised warm start from scripted-expert demonstrations.
* :mod:`simrl.train.recipe` — ``Recipe`` (pydantic): world, arms (real | world model | world model +
  schedule and mode), policy, trainer, budget, evaluation, seeds, ablation grid.
* :mod:`simrl.train.embedded` — the embedded GRPO trainer, one file: group-relative advantages over
  ``group_size`` episodes of the same task, environment failures excluded from the signal, checkpoints
  and resume.
* :mod:`simrl.train.trl_trainer` (+ :mod:`simrl.train.trl_rollout`) — ``trainer.kind: trl``: an LLM
  policy (:class:`~simrl.policies.hf_policy.HFPolicy`) trained by TRL's GRPO on one node, same run folder.
* :mod:`simrl.train.verl` — ``trainer.kind: verl``: a verl job folder per run (datasets, tool config,
  Hydra overrides, ``command.sh``), run locally or submitted to Ray; the tools step simrl environments.
* :mod:`simrl.train.runs` — run folder layout, shared worlds, environments of an arm, checkpoints.
* :mod:`simrl.train.eval_tasks` — the evaluation set fixed before a run: expert-solvable tasks, task
  properties (kind, pages, pre-drawn faults).
* :mod:`simrl.train.evaluate`, :mod:`simrl.train.ablate`, :mod:`simrl.train.report` — held-out real
  evaluation, arms x seeds orchestration, ``report.md`` / ``report.json`` / plots
  (:mod:`simrl.train.report_compare`: the preregistered primary comparison and the Holm-corrected
  secondary ones; :mod:`simrl.train.stats`: t intervals and paired t tests over seeds via scipy.stats,
  Holm's correction, the task x seed stratified bootstrap).
"""
