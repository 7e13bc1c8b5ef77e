"""The commands' pipelines: a plan from facts, then a run of named steps."""
