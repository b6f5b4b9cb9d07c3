"""BootstrapNAS on current torch, in the order a search runs:

``supernet/`` (the weight-sharing super-network generated from a pre-trained CNN) ->
``train/`` (progressive-shrinking training) -> ``search/`` (the sub-network search) ->
``export`` (the chosen sub-network as a plain model checkpoint). ``nas_config`` reads
NNCF's BootstrapNAS configuration file; ``evaluate`` measures a sub-network's top-1;
``demo`` is the embedded example (a small CNN on scikit-learn's digits)."""
