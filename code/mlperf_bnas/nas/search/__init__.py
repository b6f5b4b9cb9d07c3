"""Searching a trained super-network for its best sub-networks (DyNAS-T's design).

``settings`` (what to search: objectives, tactic, algorithm, budget) -> ``plan`` (one
search run: its inputs, processes and outputs) -> ``tactics`` (evolutionary, random,
LINAS with ``predictors``) over ``algorithms`` (pymoo by DyNAS-T name) on ``problem``
(genome -> objectives) -> ``measure`` (accuracy, MACs, parameters, ``latency``) of each
sub-network of a ``targets`` base model, optionally spread over ``distributed`` workers
-> ``pareto`` (front, hypervolume, plot)."""
