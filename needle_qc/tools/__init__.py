"""Tools around the compiler: compare, draw, plots, report, the CLI and the model zoo."""
