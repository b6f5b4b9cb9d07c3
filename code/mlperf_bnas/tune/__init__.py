"""Automatic tuning: fastest Offline settings and highest valid Server QPS (``mlperf-bnas tune``)."""
