"""The super-network, generated from a torchvision-style CNN: the traced graph (``graph``),
its elastic dimensions (depth: ``blocks``, width: ``width``, kernel: ``kernel``), the
weight-sharing layers that realise them (``elastic``), the search space they span
(``space``) and the network that activates sub-networks (``network.SuperNetwork``)."""
