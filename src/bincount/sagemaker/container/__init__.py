"""The container side of SageMaker: what runs inside AWS's PyTorch images (imports torch and
Lightning). `bridge` (hyperparameters + SM_* environment -> config ->
bincount.training.runner.train),
`multihost` (DDP that keeps checkpoints on every host's disk), `rank_record` (what each process
trained on, for checking a distributed run), `endpoint` (the four serving functions as the
inference container calls them). The launch side (bincount.sagemaker.*) never imports these."""
