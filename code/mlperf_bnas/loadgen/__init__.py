"""The LoadGen contract: QSL, SUT, postprocessors, the runner and log parsing."""
