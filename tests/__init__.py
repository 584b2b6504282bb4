"""The test suite: a package, so that mypy checks it under the names pytest imports it by."""
