"""Prices from AWS's Price List API where credentials exist, cached with their date; the table
as the offline fallback, and the cost line says which.

moto (5.x) does not implement the `pricing` service, so the API's path runs on boto3's real
`pricing` client with botocore's Stubber: the request is validated against the pricing service
model, and the answer is shaped as AWS's GetProducts returns it (PriceList: JSON strings with
product.attributes and terms.OnDemand...pricePerUnit); nothing reaches AWS."""

from __future__ import annotations

import json
from datetime import date, timedelta

import boto3
import pytest
from botocore.stub import Stubber

from bincount.sagemaker.launch import prices


def product(instance: str, component: str, usd: str, region: str = "eu-west-1") -> str:
    """One PriceList entry as AWS's Price List API returns it (a JSON string)."""
    return json.dumps(
        {
            "product": {
                "productFamily": "ML Instance",
                "attributes": {
                    "regionCode": region,
                    "servicecode": "AmazonSageMaker",
                    "instanceName": instance,
                    "component": component,
                    "platoinstancetype": component,
                    "usagetype": f"EU-{component[:5]}:{instance}",
                    "location": "EU (Ireland)",
                    "operation": "RunInstance",
                    "vCpu": "4",
                    "memory": "16 GiB",
                },
                "sku": f"SKU{component}{instance}",
            },
            "serviceCode": "AmazonSageMaker",
            "terms": {
                "OnDemand": {
                    f"SKU{component}.JRTCKXETXF": {
                        "priceDimensions": {
                            f"SKU{component}.JRTCKXETXF.6YS6EN2CT7": {
                                "unit": "Hrs",
                                "endRange": "Inf",
                                "description": f"${usd} per {component} {instance} hour",
                                "appliesTo": [],
                                "rateCode": f"SKU{component}.JRTCKXETXF.6YS6EN2CT7",
                                "beginRange": "0",
                                "pricePerUnit": {"USD": usd},
                            }
                        },
                        "sku": f"SKU{component}{instance}",
                        "effectiveDate": "2026-11-01T00:00:00Z",
                        "offerTermCode": "JRTCKXETXF",
                        "termAttributes": {},
                    }
                }
            },
            "version": "20261101000000",
            "publicationDate": "2026-11-01T00:00:00Z",
        }
    )


ANSWER = {
    "FormatVersion": "aws_v1",
    "PriceList": [
        product("ml.m5.xlarge", "Hosting", "0.2300000000"),
        product("ml.m5.xlarge", "Training", "0.2560000000"),
    ],
}
REQUEST = {
    "ServiceCode": "AmazonSageMaker",
    "Filters": [
        {"Type": "TERM_MATCH", "Field": "productFamily", "Value": "ML Instance"},
        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": "eu-west-1"},
        {"Type": "TERM_MATCH", "Field": "instanceName", "Value": "ml.m5.xlarge"},
    ],
    "MaxResults": 100,
}


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.delenv("BINCOUNT_PRICES", raising=False)  # tests/conftest.py sets it
    monkeypatch.setenv("BINCOUNT_CACHE_DIR", str(tmp_path / "cache"))
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path / "cache"


def stubbed(*answers):
    client = boto3.client(
        "pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stub = Stubber(client)
    for answer in answers:
        if isinstance(answer, Exception):
            stub.add_client_error("get_products", "AccessDeniedException", str(answer))
        else:
            stub.add_response("get_products", answer, REQUEST)
    stub.activate()
    return client, stub


def test_the_training_price_is_read_from_a_real_shaped_answer():
    assert prices.parse_products(ANSWER["PriceList"], "ml.m5.xlarge") == 0.256
    assert prices.parse_products(ANSWER["PriceList"], "ml.g5.xlarge") is None
    hosting_only = [product("ml.m5.xlarge", "Hosting", "0.23")]
    assert prices.parse_products(hosting_only, "ml.m5.xlarge") is None


def test_the_api_price_is_cached_with_its_date_and_named_in_the_cost_line(env):
    client, stub = stubbed(ANSWER)
    usd, source = prices.price_of("ml.m5.xlarge", "eu-west-1", client)
    stub.assert_no_pending_responses()
    assert usd == 0.256
    today = date.today().isoformat()
    assert source == f"AWS Price List API, eu-west-1, fetched {today}"
    saved = json.loads((env / "prices" / "eu-west-1.json").read_text())
    assert saved["prices"]["ml.m5.xlarge"] == {"usd_per_hour": 0.256, "fetched": today}
    # the second time from the cache: no call (the stub has no answer left and would raise)
    usd, source = prices.price_of("ml.m5.xlarge", "eu-west-1", client)
    assert usd == 0.256 and source.endswith("(cached)")
    est = prices.estimate("ml.m5.xlarge", 2, 7200, region="eu-west-1")
    assert est.on_demand_per_hour == pytest.approx(0.512)
    assert f"prices: AWS Price List API, eu-west-1, fetched {today} (cached)" in "\n".join(
        est.lines()
    )
    # older than CACHE_DAYS: asked again
    stale = date.today() - timedelta(days=prices.CACHE_DAYS + 1)
    prices.remember("ml.m5.xlarge", "eu-west-1", 9.0, today=stale)
    assert prices.cached("ml.m5.xlarge", "eu-west-1") is None


def test_the_table_is_the_fallback_and_says_why(env, monkeypatch):
    est = prices.estimate("ml.m5.xlarge", 1, 3600, region="eu-west-1")  # no credentials here
    assert est.on_demand_per_hour == prices.INSTANCES["ml.m5.xlarge"].usd_per_hour
    line = "\n".join(est.lines())
    assert prices.PRICES_SOURCE in line and prices.PRICES_AS_OF in line
    assert "(the table: no AWS credentials for the Price List API)" in line
    client, _ = stubbed(RuntimeError("not authorized to perform pricing:GetProducts"))
    usd, why = prices.price_of("ml.m5.xlarge", "eu-west-1", client)
    assert usd is None and why == ": the Price List API failed (AccessDeniedException)"
    client, _ = stubbed({"FormatVersion": "aws_v1", "PriceList": []})
    usd, why = prices.price_of("ml.m5.xlarge", "eu-west-1", client)
    assert usd is None and "has no training price of ml.m5.xlarge in eu-west-1" in why
    assert not (env / "prices").exists()  # failures are not cached
    monkeypatch.setenv("BINCOUNT_PRICES", "table")
    assert prices.price_of("ml.m5.xlarge", "eu-west-1", client) == (None, ": BINCOUNT_PRICES=table")
