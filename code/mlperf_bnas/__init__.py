"""MLPerf Inference harness for BootstrapNAS-optimised models.

The package is the shared core; benchmark directories under ``code/`` hold only
configuration (``config.yaml``), ``user.conf`` files, READMEs and bash scripts.
"""

__version__ = "0.1.0"
