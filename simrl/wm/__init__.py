"""World models: LLMs (or the oracle) that predict what an environment returns after an action."""
