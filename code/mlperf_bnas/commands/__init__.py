"""One module per ``mlperf-bnas`` subcommand: ``add_arguments(parser)`` and ``run(args)``."""
