"""The price table and the cost model: provenance of every figure, overrides, and the digits one-row
profile, where the request fee and egress (not vCPU) decide which cloud is cheap."""

from __future__ import annotations

import json
import math
from datetime import date
from importlib import resources

import pytest

from orchestrator.control.routing.pricing import (
    PRICE_FIELDS,
    CostBreakdown,
    Load,
    billed_instance_seconds,
    cost_per_request,
    load_prices,
    parse_prices,
)
from orchestrator.core.contract import CLOUDS
from orchestrator.core.errors import ConfigError

# The digits model's one-row prediction as measured: ~600 bytes in, ~400 out, 0.3 ms of CPU.
ROW_BYTES_IN, ROW_BYTES_OUT, ROW_CPU_S = 600.0, 400.0, 0.0003
# The Pulumi stacks' default size: 1 vCPU, 2 GiB, Cloud Run's default concurrency of 80.
VCPU, MEMORY_GIB, CONCURRENCY = 1.0, 2.0, 80


def digits(requests_per_s: float) -> Load:
    return Load(requests_per_s, ROW_BYTES_IN, ROW_BYTES_OUT, ROW_CPU_S)


def cost(cloud: str, traffic: Load, prices=None) -> CostBreakdown:
    return cost_per_request(cloud, prices or load_prices(), traffic, VCPU, MEMORY_GIB, CONCURRENCY)


def raw_table() -> dict:
    return json.loads(
        (resources.files("orchestrator.control.routing") / "prices.json").read_text(encoding="utf-8")
    )


# --- the data -------------------------------------------------------------------------------


def test_every_figure_has_a_source_and_a_date():
    raw = raw_table()
    assert isinstance(raw["version"], str)
    assert raw["version"]
    assert set(raw["clouds"]) == set(CLOUDS)
    for cloud, entry in raw["clouds"].items():
        figures = {key: value for key, value in entry.items() if key != "service"}
        assert set(figures) <= set(PRICE_FIELDS), cloud
        for key, figure in figures.items():
            where = f"{cloud}.{key}"
            assert {"value", "source", "as_of"} <= figure.keys(), where
            assert figure["source"].startswith("https://"), where
            date.fromisoformat(figure["as_of"])
        # Exactly one egress price, in the unit the cloud's page uses.
        assert len({"egress_usd_per_gb", "egress_usd_per_gib"} & figures.keys()) == 1, cloud


def test_the_loaded_table_keeps_the_version_and_each_figures_provenance():
    prices = load_prices()
    assert prices.version == raw_table()["version"]
    for cloud in CLOUDS:
        provenance = prices[cloud].provenance
        assert set(provenance) == {
            "billing",
            "vcpu_second_usd",
            "gib_second_usd",
            "request_million_usd",
            prices[cloud].egress_field,
            "billing_granularity_s",
        }
        assert all(p.source.startswith("https://") and p.as_of for p in provenance.values())


def test_list_prices_are_the_published_ones_in_per_second_units():
    prices = load_prices()
    aws, gcp, azure = prices["aws"], prices["gcp"], prices["azure"]
    # Fargate publishes per hour: 0.04048 USD per vCPU-hour and 0.004445 USD per GB-hour.
    assert aws.vcpu_second_usd * 3600 == pytest.approx(0.04048)
    assert aws.gib_second_usd * 3600 == pytest.approx(0.004445)
    assert (aws.billing, aws.request_million_usd, aws.egress_unit, aws.egress_usd) == (
        "task",
        0.0,
        "GB",
        0.09,
    )
    assert (gcp.billing, gcp.billing_granularity_s, gcp.egress_unit, gcp.egress_usd) == (
        "in_flight",
        0.1,
        "GiB",
        0.12,
    )
    assert (gcp.vcpu_second_usd, gcp.gib_second_usd, gcp.request_million_usd) == (0.000024, 0.0000025, 0.40)
    assert (azure.billing, azure.billing_granularity_s, azure.egress_unit) == ("in_flight", 1.0, "GB")
    assert (azure.vcpu_second_usd, azure.gib_second_usd, azure.request_million_usd) == (
        0.000024,
        0.000003,
        0.40,
    )
    assert gcp.egress_usd_per_byte == 0.12 / 2**30
    assert aws.egress_usd_per_byte == 0.09 / 1e9


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda t: t.pop("version"), "t.json: version: missing"),
        (lambda t: t.update(schema=2), "t.json: not a price table of schema 1"),
        (
            lambda t: t["clouds"]["gcp"]["vcpu_second_usd"].pop("source"),
            r"clouds\.gcp\.vcpu_second_usd\.source",
        ),
        (
            lambda t: t["clouds"]["gcp"]["vcpu_second_usd"].update(as_of="2026"),
            r"vcpu_second_usd\.as_of: '2026'",
        ),
        (
            lambda t: t["clouds"]["aws"].pop("request_million_usd"),
            r"clouds\.aws\.request_million_usd: missing",
        ),
        (
            lambda t: t["clouds"]["aws"].update(egress_usd_per_gib=t["clouds"]["aws"]["egress_usd_per_gb"]),
            "exactly one",
        ),
        (lambda t: t["clouds"]["aws"].update(spot_discount={}), r"clouds\.aws\.spot_discount: unknown field"),
        (
            lambda t: t["clouds"]["azure"]["billing"].update(value="hourly"),
            r"clouds\.azure\.billing: must be one of",
        ),
    ],
)
def test_a_malformed_table_is_refused_naming_the_key(damage, message):
    table = raw_table()
    damage(table)
    with pytest.raises(ConfigError, match=message):
        parse_prices(table, origin="t.json")


def test_an_unknown_cloud_has_no_prices():
    with pytest.raises(ConfigError, match="no prices for cloud 'oci'"):
        load_prices()["oci"]


# --- the digits one-row request ---------------------------------------------------------------


def test_one_row_request_fee_and_egress_dominate_compute_on_a_busy_instance():
    # 1000 requests/s keep one Cloud Run or Container Apps instance billed continuously, so each
    # request pays 1 ms of instance time, about a tenth of its request fee and egress.
    for cloud in ("gcp", "azure"):
        b = cost(cloud, digits(1000.0))
        assert b.billed_instance_s == pytest.approx(0.001)
        assert b.request_fee + b.egress > 10 * b.compute, (cloud, b.per_million())
    # A model looking only at vCPU time would call them as cheap as Fargate; they are ten times
    # dearer, and Fargate (no request fee) is the cheapest per request by far.
    fargate = cost("aws", digits(1000.0))
    assert fargate.request_fee == 0
    assert fargate.compute == pytest.approx(ROW_CPU_S * (VCPU * 0.04048 + MEMORY_GIB * 0.004445) / 3600)
    assert 10 * fargate.total < min(cost("gcp", digits(1000.0)).total, cost("azure", digits(1000.0)).total)


def test_the_worked_example_in_the_module_docstring_holds():
    expected = {  # USD per million: compute, request fee, egress, total (pricing.py's table)
        ("aws", 1000.0): (0.0041, 0.0, 0.0360, 0.0401),
        ("gcp", 1000.0): (0.0290, 0.40, 0.0447, 0.4737),
        ("azure", 1000.0): (0.0300, 0.40, 0.0348, 0.4648),
        ("gcp", 50.0): (0.5762, 0.40, 0.0447, 1.0209),
        ("azure", 50.0): (0.6000, 0.40, 0.0348, 1.0348),
    }
    for (cloud, rps), figures in expected.items():
        got = cost(cloud, digits(rps)).per_million()
        assert tuple(round(got[k], 4) for k in ("compute", "request_fee", "egress", "total")) == figures


def test_on_a_nearly_idle_instance_the_billed_slots_dominate():
    # At 10 requests/s most 100 ms slots hold one request: each pays most of a slot, far more
    # than its 0.3 ms of CPU, and more than its request fee.
    b = cost("gcp", digits(10.0))
    assert b.billed_instance_s == pytest.approx(-math.expm1(-10 * (0.1 + ROW_CPU_S)) / 10)
    assert b.compute > b.request_fee + b.egress


def test_request_bytes_are_free_ingress():
    assert cost("gcp", Load(50.0, 0.0, 400.0, ROW_CPU_S)) == cost("gcp", Load(50.0, 1e9, 400.0, ROW_CPU_S))


def test_per_million_scales_every_line_item():
    b = cost("azure", digits(50.0))
    assert b.per_million() == pytest.approx(
        {"compute": b.compute * 1e6, "request_fee": 0.4, "egress": b.egress * 1e6, "total": b.total * 1e6}
    )
    assert b.total == pytest.approx(b.compute + b.request_fee + b.egress)


# --- the billed-time model ----------------------------------------------------------------------


def test_billed_time_limits():
    def billed(billing, g, rps, cpu_s=ROW_CPU_S, vcpu=1.0, concurrency=80):
        return billed_instance_seconds(billing, g, Load(rps, 0, 0, cpu_s), vcpu, concurrency)

    # Sparse traffic pays a whole slot plus the request's own time; no traffic, the same limit.
    assert billed("in_flight", 0.1, 1e-6) == pytest.approx(0.1 + ROW_CPU_S)
    assert billed("in_flight", 0.1, 0.0) == pytest.approx(0.1 + ROW_CPU_S)
    # Dense traffic shares one continuously billed instance.
    assert billed("in_flight", 0.1, 1000.0) == pytest.approx(1 / 1000)
    # Past one instance's throughput (1 / 0.3 ms = 3333 rps), instances are full: the CPU time.
    assert billed("in_flight", 0.1, 1e5) == pytest.approx(ROW_CPU_S)
    # A request that takes longer than a slot pays at least its own time.
    assert billed("in_flight", 0.1, 0.5, cpu_s=1.0) >= 1.0
    # Always-on tasks: only the CPU time, whatever the rate.
    assert billed("task", 1.0, 1.0) == billed("task", 1.0, 1e4) == pytest.approx(ROW_CPU_S)
    # Half a vCPU runs a request half as fast; concurrency 1 on 2 vCPUs leaves one idle.
    assert billed("task", 1.0, 1.0, vcpu=0.5) == pytest.approx(2 * ROW_CPU_S / 1.0)
    assert billed("task", 1.0, 1.0, vcpu=2.0, concurrency=1) == pytest.approx(ROW_CPU_S)
    assert billed("task", 1.0, 1.0, cpu_s=0.0) == 0.0


def test_bad_sizes_and_traffic_are_refused():
    with pytest.raises(ValueError, match="requests_per_s"):
        Load(-1.0, 0, 0, 0)
    with pytest.raises(ValueError, match="cpu_seconds_per_request"):
        Load(1.0, 0, 0, math.nan)
    with pytest.raises(ValueError, match="vcpu > 0"):
        cost_per_request("gcp", load_prices(), digits(1.0), 0.0, 1.0, 1)
    with pytest.raises(ValueError, match="memory_gib"):
        cost_per_request("gcp", load_prices(), digits(1.0), 1.0, -1.0, 1)


# --- overrides --------------------------------------------------------------------------------


def test_overrides_replace_a_figure_and_say_it_came_from_configuration():
    prices = load_prices({"gcp": {"request_million_usd": 0.0, "vcpu_second_usd": 0.00001}})
    gcp = prices["gcp"]
    assert (gcp.request_million_usd, gcp.vcpu_second_usd) == (0.0, 0.00001)
    assert (
        gcp.provenance["request_million_usd"].source == "configuration (clouds.gcp.price.request_million_usd)"
    )
    assert gcp.provenance["request_million_usd"].as_of is None
    assert gcp.provenance["gib_second_usd"].source.startswith("https://")  # untouched
    assert prices["aws"] == load_prices()["aws"]
    assert cost("gcp", digits(1000.0), prices).request_fee == 0.0


def test_an_egress_override_may_change_the_unit():
    gcp = load_prices({"gcp": {"egress_usd_per_gb": 0.085}})["gcp"]
    assert (gcp.egress_unit, gcp.egress_usd, gcp.egress_field) == ("GB", 0.085, "egress_usd_per_gb")
    assert gcp.egress_usd_per_byte == 0.085 / 1e9
    assert "egress_usd_per_gib" not in gcp.provenance
    assert gcp.provenance["egress_usd_per_gb"].as_of is None


def test_a_billing_override_changes_the_model():
    # Cloud Run with instance-based billing: no request fee, always-on instances.
    gcp = load_prices({"gcp": {"billing": "task", "request_million_usd": 0}})
    assert cost("gcp", digits(10.0), gcp).billed_instance_s == pytest.approx(ROW_CPU_S)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"gcp": {"vcpu_usd": 1.0}}, r"clouds\.gcp\.price\.vcpu_usd: unknown price field"),
        ({"aws": {"egress_usd": 0.1}}, r"clouds\.aws\.price\.egress_usd: unknown price field"),
        ({"oci": {"vcpu_second_usd": 1.0}}, r"clouds\.oci\.price: there are no packaged prices for 'oci'"),
        ({"gcp": {"vcpu_second_usd": -1.0}}, r"clouds\.gcp\.price\.vcpu_second_usd: must be a finite number"),
        (
            {"gcp": {"vcpu_second_usd": math.inf}},
            r"clouds\.gcp\.price\.vcpu_second_usd: must be a finite number",
        ),
        ({"gcp": {"vcpu_second_usd": True}}, r"clouds\.gcp\.price\.vcpu_second_usd: must be a finite number"),
        (
            {"gcp": {"vcpu_second_usd": "0.1"}},
            r"clouds\.gcp\.price\.vcpu_second_usd: must be a finite number",
        ),
        ({"gcp": {"billing": "spot"}}, r"clouds\.gcp\.price\.billing: must be one of task, in_flight"),
        ({"gcp": {"egress_usd_per_gb": 0.1, "egress_usd_per_gib": 0.1}}, "not both"),
    ],
)
def test_bad_overrides_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_prices(overrides)


def test_unknown_field_message_lists_the_known_ones():
    with pytest.raises(ConfigError) as caught:
        load_prices({"azure": {"gb_second_usd": 0.1}})
    assert str(caught.value) == (
        "clouds.azure.price.gb_second_usd: unknown price field (known: billing, vcpu_second_usd, "
        "gib_second_usd, request_million_usd, egress_usd_per_gb, egress_usd_per_gib, billing_granularity_s)"
    )
