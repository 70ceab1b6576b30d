"""The fidelity evaluation of world models (``simrl wm eval``): how close a world model's predicted
observations are to the real environment's, apart from the world-model environment (:mod:`simrl.wm`) it judges.

Data flow: real transitions (:mod:`simrl.wm.transitions`) -> predictors (:mod:`simrl.fidelity.oracle`,
:mod:`simrl.fidelity.predict`) -> rule-based scores (:mod:`simrl.fidelity.scoring`, reading
:mod:`simrl.fidelity.rules` and :mod:`simrl.fidelity.bindings`) and the optional LLM judge
(:mod:`simrl.fidelity.judge`) -> ``scores.json`` / ``scores.md`` (:mod:`simrl.fidelity.report`).
:mod:`simrl.fidelity.evaluate` runs it; :mod:`simrl.fidelity.control` measures control compliance.
"""
