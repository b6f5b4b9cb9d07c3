"""Training a super-network: progressive shrinking with knowledge distillation
(``progressive``), and the steps the ``mlperf-bnas nas`` command runs around it
(``steps``: pre-trained model and data, train, export, info, the embedded demo)."""
