"""What a job may cost: on-demand prices of SageMaker training instances, and spot estimates.

Where AWS credentials exist, the price comes from AWS's Price List API (boto3's `pricing`
client in us-east-1, product family "ML Instance", component "Training", the job's region),
cached with its date under the user's cache dir (`<cache>/prices/<region>.json`, reused for
CACHE_DAYS). Without credentials, when the API cannot be reached or lacks the type, or with
BINCOUNT_PRICES=table, the table below is the offline fallback; the cost line says which.

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

import json
import os
from dataclasses import dataclass
from datetime import date, timedelta

PRICES_AS_OF = "2024-06"
PRICES_REGION = "us-east-1"
PRICES_SOURCE = "https://aws.amazon.com/sagemaker/pricing/ (On-Demand, Training, us-east-1)"
CACHE_DAYS = 30
PRICING_REGION = "us-east-1"  # where the Price List API answers for every region


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
    source: str = ""  # where the price came from (the API, its cache, or the table)

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
            f"  prices: {self.source or f'{PRICES_SOURCE}, as of {PRICES_AS_OF}'}; other regions "
            "differ. You pay for the seconds a job runs, so a job that ends early costs less.",
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
    region: str | None = None,
) -> Estimate:
    """`region`: look the price up with AWS (price_of); None: the table."""
    usd, source = price_of(instance_type, region) if region else (None, "")
    if usd is None:
        known = INSTANCES.get(instance_type)
        usd = known.usd_per_hour if known else None
        source = f"{PRICES_SOURCE}, as of {PRICES_AS_OF} (the table{source})"
    return Estimate(
        instance_type=instance_type,
        instance_count=instance_count,
        jobs=jobs,
        max_hours=max_runtime_s / 3600,
        on_demand_per_hour=usd * instance_count if usd is not None else None,
        spot_savings=spot_savings,
        spot=spot,
        source=source,
    )


# ----- AWS's Price List API, cached -----


def parse_products(price_list: list[str], instance_type: str) -> float | None:
    """The on-demand USD per hour of a SageMaker training instance in get_products' PriceList
    (JSON strings: product.attributes, terms.OnDemand.*.priceDimensions.*.pricePerUnit)."""
    for text in price_list:
        item = json.loads(text) if isinstance(text, str) else text
        attrs = item.get("product", {}).get("attributes", {})
        if attrs.get("instanceName") != instance_type:
            continue
        if "Training" not in (attrs.get("component"), attrs.get("platoinstancetype")):
            continue
        for term in item.get("terms", {}).get("OnDemand", {}).values():
            for dim in term.get("priceDimensions", {}).values():
                usd = dim.get("pricePerUnit", {}).get("USD")
                if usd and dim.get("unit", "Hrs").lower().startswith("hr") and float(usd) > 0:
                    return float(usd)
    return None


def fetch(instance_type: str, region: str, client) -> float | None:
    """One get_products call (filtered to the type, the region and training) -> its price."""
    filters = [
        {"Type": "TERM_MATCH", "Field": "productFamily", "Value": "ML Instance"},
        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
        {"Type": "TERM_MATCH", "Field": "instanceName", "Value": instance_type},
    ]
    price_list: list[str] = []
    kwargs: dict = {"ServiceCode": "AmazonSageMaker", "Filters": filters, "MaxResults": 100}
    for _ in range(10):
        page = client.get_products(**kwargs)
        price_list += page.get("PriceList", [])
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]
    return parse_products(price_list, instance_type)


def _cache_file(region: str):
    from bincount.config import user_cache_dir

    return user_cache_dir() / "prices" / f"{region}.json"


def cached(instance_type: str, region: str, today: date | None = None) -> tuple[float, str] | None:
    path = _cache_file(region)
    try:
        entry = json.loads(path.read_text())["prices"][instance_type]
        fetched = date.fromisoformat(entry["fetched"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if (today or date.today()) - fetched > timedelta(days=CACHE_DAYS):
        return None
    return float(entry["usd_per_hour"]), entry["fetched"]


def remember(instance_type: str, region: str, usd: float, today: date | None = None) -> None:
    from bincount.fileio import atomic_write_json

    path = _cache_file(region)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {"region": region, "prices": {}}
    day = (today or date.today()).isoformat()
    data.setdefault("prices", {})[instance_type] = {"usd_per_hour": usd, "fetched": day}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, data)


def pricing_client():
    """The Price List API's client, or None without AWS credentials."""
    import boto3
    from botocore.config import Config

    session = boto3.Session()
    if session.get_credentials() is None:
        return None
    config = Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 1})
    return session.client("pricing", region_name=PRICING_REGION, config=config)


def price_of(instance_type: str, region: str, client=None) -> tuple[float | None, str]:
    """(USD per instance-hour, where from) from the cache or the API; (None, why not) sends
    the caller to the table."""
    if os.environ.get("BINCOUNT_PRICES", "").lower() == "table":
        return None, ": BINCOUNT_PRICES=table"
    hit = cached(instance_type, region)
    if hit:
        return hit[0], f"AWS Price List API, {region}, fetched {hit[1]} (cached)"
    try:
        client = client or pricing_client()
        if client is None:
            return None, ": no AWS credentials for the Price List API"
        usd = fetch(instance_type, region, client)
    except Exception as e:  # any failure of an estimate falls back to the table
        return None, f": the Price List API failed ({type(e).__name__})"
    if usd is None:
        return None, f": the Price List API has no training price of {instance_type} in {region}"
    remember(instance_type, region, usd)
    return usd, f"AWS Price List API, {region}, fetched {date.today().isoformat()}"
