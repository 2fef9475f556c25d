"""Metric providers: built-in router counters, Prometheus, CloudWatch and a generic HTTP JSON endpoint."""

from shipyard.monitoring.providers.router import ROUTER_METRICS, RouterProvider

__all__ = ["ROUTER_METRICS", "RouterProvider"]
