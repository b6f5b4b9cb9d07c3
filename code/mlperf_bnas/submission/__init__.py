"""Submission tooling: system description, packaging, truncation, compliance and our checker.

Nothing in this package imports torch or openvino: packaging and checking run on
any machine that has the results, and ``mlperf-bnas package --default-system-name``
must answer in a fraction of a second (``tools/env.sh`` calls it for every run).
"""
