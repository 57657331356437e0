"""Run the training of this project on SageMaker: jobs, tuning jobs, the container bridge.

Two halves, one package each:
- `bincount.sagemaker.launch` (no torch, no models; the SageMaker SDK imported only when
  submitting): `overrides` (which command-line overrides travel as hyperparameters), `spec`
  (the job from the config, checked before any call), `hpo` (the search space), `prices` (cost
  estimate), `bundle` and `wheels` (the source uploaded, offline wheels), `channels` (the
  data and weights channels), `submit` (the SDK calls), `capture` (what the SDK sends,
  captured in botocore: dry runs and requests.json), `launcher` (all of it, for
  launch_sagemaker.py), `cleanup` (delete what costs money), `deploy` (endpoints), `pull`
  (trials into run folders), `region` (the one region rule), `tags`.
- `bincount.sagemaker.container` (torch and Lightning; never imported by the launch side):
  `endpoint` (the four serving functions as the inference container calls them), `bridge`
  (hyperparameters + SM_* environment -> config -> `bincount.training.runner.train`),
  `rank_record` (what each process trained on), `multihost` (DDP that keeps checkpoints on
  every host's disk), `failure` (SageMaker's failure file), `trackers` (the trackers' folders).
"""
