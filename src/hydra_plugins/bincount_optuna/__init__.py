"""Hydra sweeper `hydra/sweeper=optuna`: the search space of `+sweep=hpo`, run locally."""
