"""Fixtures of tests/sagemaker: a real moto server behind a recording proxy (see sm_moto.py)."""

from sm_moto import aws, moto_proxy

__all__ = ["aws", "moto_proxy"]
