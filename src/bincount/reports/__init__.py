"""Reports: describe a dataset, compare runs, evaluate checkpoints, report on a run."""
