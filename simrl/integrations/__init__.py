"""simrl inside other training libraries.

:mod:`simrl.integrations.trl`: any registered environment and arm as TRL ``GRPOTrainer``'s
``environment_factory``, with a dataset of a world's tasks and the reward function from the task's scorer.
"""
