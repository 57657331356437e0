"""What a job may cost: on-demand prices of SageMaker training instances, and spot estimates.

The table is AWS's published on-demand price of SageMaker *training* instances in US East
(N. Virginia), per instance-hour, from https://aws.amazon.com/sagemaker/pricing/ (tab "On-Demand
Pricing", "Training"), as listed in PRICES_AS_OF. It was transcribed by hand, not fetched: prices
change and differ by region (often 10-30 % higher outside us-east-1), so treat the figures as
estimates. Spot prices vary by type, zone and hour; the estimate applies an assumed saving
(`sagemaker.spot_savings`, AWS quotes "up to 90 %").
The table only prices: any `ml.*` type launches (AWS's image for it is picked by its family), and
one the table lacks gets "price unknown" with the table's source and date.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_AS_OF = "2024-06"
PRICES_REGION = "us-east-1"
PRICES_SOURCE = "https://aws.amazon.com/sagemaker/pricing/ (On-Demand, Training, us-east-1)"


@dataclass(frozen=True)
class Instance:
    usd_per_hour: float
    gpus: int
    gpu: str = ""


INSTANCES: dict[str, Instance] = {
    "ml.m5.large": Instance(0.115, 0),
    "ml.m5.xlarge": Instance(0.23, 0),
    "ml.m5.2xlarge": Instance(0.461, 0),
    "ml.m5.4xlarge": Instance(0.922, 0),
    "ml.m5.12xlarge": Instance(2.765, 0),
    "ml.c5.xlarge": Instance(0.204, 0),
    "ml.c5.2xlarge": Instance(0.408, 0),
    "ml.c5.4xlarge": Instance(0.816, 0),
    "ml.c5.9xlarge": Instance(1.836, 0),
    "ml.g4dn.xlarge": Instance(0.736, 1, "T4"),
    "ml.g4dn.2xlarge": Instance(0.94, 1, "T4"),
    "ml.g4dn.4xlarge": Instance(1.505, 1, "T4"),
    "ml.g4dn.8xlarge": Instance(2.72, 1, "T4"),
    "ml.g4dn.12xlarge": Instance(4.89, 4, "T4"),
    "ml.g5.xlarge": Instance(1.408, 1, "A10G"),
    "ml.g5.2xlarge": Instance(1.515, 1, "A10G"),
    "ml.g5.4xlarge": Instance(2.03, 1, "A10G"),
    "ml.g5.12xlarge": Instance(7.09, 4, "A10G"),
    "ml.g5.48xlarge": Instance(20.36, 8, "A10G"),
    "ml.p3.2xlarge": Instance(3.825, 1, "V100"),
    "ml.p3.8xlarge": Instance(14.688, 4, "V100"),
    "ml.p3.16xlarge": Instance(28.152, 8, "V100"),
    "ml.p4d.24xlarge": Instance(37.688, 8, "A100"),
}


@dataclass(frozen=True)
class Estimate:
    instance_type: str
    instance_count: int
    jobs: int  # training jobs (a tuning job runs up to max_trials)
    max_hours: float  # per job: the max runtime
    on_demand_per_hour: float | None  # all instances of one job; None: not in the table
    spot_savings: float
    spot: bool

    @property
    def on_demand_max(self) -> float:
        return self.on_demand_per_hour * self.max_hours * self.jobs

    @property
    def spot_max(self) -> float:
        return self.on_demand_max * (1.0 - self.spot_savings)

    def lines(self) -> list[str]:
        per_job = f"{self.instance_count} x {self.instance_type}"
        jobs = f" x {self.jobs} jobs" if self.jobs > 1 else ""
        chosen = "spot" if self.spot else "on-demand"
        if self.on_demand_per_hour is None:
            return [
                f"cost estimate ({chosen} chosen): {per_job}, at most {self.max_hours:g} h{jobs}: "
                f"price unknown ({self.instance_type} is not in the table of {PRICES_SOURCE}, "
                f"as of {PRICES_AS_OF}; see that page for its price)"
            ]
        return [
            f"cost estimate ({chosen} chosen): {per_job} at ${self.on_demand_per_hour:.3f}/h "
            f"on-demand; at most {self.max_hours:g} h{jobs}",
            f"  on-demand: up to ${self.on_demand_max:,.2f}",
            f"  spot:      up to ${self.spot_max:,.2f} (assumes {self.spot_savings:.0%} saving; "
            "spot prices vary)",
            f"  prices: {PRICES_SOURCE}, as of {PRICES_AS_OF}; other regions differ. You pay for "
            "the seconds a job runs, so a job that ends early costs less.",
        ]


def instance(instance_type: str) -> Instance | None:
    return INSTANCES.get(instance_type)


def estimate(
    instance_type: str,
    instance_count: int,
    max_runtime_s: int,
    jobs: int = 1,
    spot: bool = False,
    spot_savings: float = 0.7,
) -> Estimate:
    known = INSTANCES.get(instance_type)
    return Estimate(
        instance_type=instance_type,
        instance_count=instance_count,
        jobs=jobs,
        max_hours=max_runtime_s / 3600,
        on_demand_per_hour=known.usd_per_hour * instance_count if known else None,
        spot_savings=spot_savings,
        spot=spot,
    )
