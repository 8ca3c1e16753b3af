"""The Prometheus text /metrics serves: counters and cumulative latency histograms."""

from __future__ import annotations

from app.observability import Metrics


def _series(text: str) -> dict[str, str]:
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_latency_buckets_are_cumulative_with_inclusive_bounds() -> None:
    metrics = Metrics()
    for seconds in (0.001, 0.005, 0.02, 0.3, 7.0):  # 0.005 sits exactly on a bound: le is <=
        metrics.observe("GET", "/v1/children/{child_id}/custody", 200, seconds)
    metrics.observe("GET", "/v1/children/{child_id}/custody", 404, 0.002)

    series = _series(metrics.render())
    labels = 'method="GET",route="/v1/children/{child_id}/custody"'
    buckets = {
        bound: int(series[f'childlink_http_request_duration_seconds_bucket{{{labels},le="{bound}"}}'])
        for bound in ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "+Inf")
    }
    assert buckets == {
        "0.005": 3,
        "0.01": 3,
        "0.025": 4,
        "0.05": 4,
        "0.1": 4,
        "0.25": 4,
        "0.5": 5,
        "1.0": 5,
        "2.5": 5,
        "+Inf": 6,
    }
    assert series[f"childlink_http_request_duration_seconds_count{{{labels}}}"] == "6"
    assert float(series[f"childlink_http_request_duration_seconds_sum{{{labels}}}"]) == 7.328
    assert series[f'childlink_http_requests_total{{{labels},status="200"}}'] == "5"
    assert series[f'childlink_http_requests_total{{{labels},status="404"}}'] == "1"
