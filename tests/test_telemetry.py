"""FastAPI's native OpenTelemetry support: off by default, on with ``CHILDLINK_OTEL``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.config import Settings
from app.main import create_app

_exporter = InMemorySpanExporter()


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """A configured OpenTelemetry SDK, as a deployment that collects traces has. The global
    provider can be set once per process; apps built with telemetry off never look at it."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)
    _exporter.clear()
    yield _exporter
    _exporter.clear()


async def _health(application: Any) -> None:
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        assert (await http.get("/healthz")).status_code == 200


async def test_no_spans_by_default(app: Any, spans: InMemorySpanExporter) -> None:
    await _health(app)
    assert spans.get_finished_spans() == ()


async def test_spans_when_turned_on(settings: Settings, spans: InMemorySpanExporter) -> None:
    traced = create_app(settings.model_copy(update={"otel": True}))
    async with traced.router.lifespan_context(traced):
        await _health(traced)
    routes = [span.attributes.get("http.route") for span in spans.get_finished_spans() if span.attributes]
    assert "/healthz" in routes
