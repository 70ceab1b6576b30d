"""Held-out evaluation of a policy in the REAL environment: below the trainers and the experiment.

It knows policies, environments and tasks, never recipes, runs or trainers (``tests/test_layout.py``):

* :mod:`simrl.evaluation.edge_cases` — the edge cases an episode met, read off its own text (a next page, an
  operational fault: :data:`~simrl.evaluation.edge_cases.FAULT`); descriptive, never compared across arms.
* :mod:`simrl.evaluation.eval_set` — the evaluation set fixed before a run: the tasks the scripted expert
  solves within the turn limit, and their properties (kind, pages, pre-drawn faults), which define the
  subsets; :mod:`simrl.evaluation.expressible` checks that the candidate actions can solve each task.
* :mod:`simrl.evaluation.evaluate` — :func:`~simrl.evaluation.evaluate.evaluate_policy`: ``trials`` episodes
  of a policy on every task (episode seeds from :data:`~simrl.evaluation.evaluate.EVAL_SEED`).
* :mod:`simrl.evaluation.results` — :class:`~simrl.evaluation.results.EvalResult` (``eval.json``): success,
  pass@k / avg@k, F1s, success per subset (:data:`~simrl.evaluation.results.SUBSETS`) and per edge case met;
  pooling over worlds (:func:`~simrl.evaluation.results.merge_results`).

A recipe's evaluation of runs and baselines is built on it in :mod:`simrl.experiment.heldout`.
"""
