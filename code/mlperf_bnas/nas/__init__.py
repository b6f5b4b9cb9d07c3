"""BootstrapNAS on current torch: automatic super-network generation (``supernet``),
progressive-shrinking training (``train``), evaluation (``evaluate``), sub-network
export (``export``) and the sub-network search built on them (``search*``)."""
