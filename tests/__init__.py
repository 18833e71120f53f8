"""The test suite: a package, so that `tests.conftest` is ours (iterative-stratification installs a
top-level `tests` package of its own)."""
