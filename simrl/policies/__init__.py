"""Policies that act in simrl environments: scripted experts (and, later, LLM and trained policies)."""
