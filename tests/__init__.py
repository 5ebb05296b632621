"""The test suite, a package: shared helpers are imported as its modules (``from tests.conftest import run_cli``)."""
