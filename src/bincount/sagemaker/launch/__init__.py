"""The launch side of SageMaker (no torch, no models): its modules are listed in
`bincount.sagemaker`'s docstring; the contracts `launch-side-no-torch` and
`launch-side-not-container` hold this whole package."""
