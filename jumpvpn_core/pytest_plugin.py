"""pytest plugin: `--jumpvpn-impl=package.module:factory` adds a conformance test.

Registered as the `jumpvpn` pytest11 entry point. It lives outside `jumpvpn_core.testing`
so that loading it needs only pytest. When the option is given, one test item,
`jumpvpn-conformance[<spec>]`, runs `ConformanceMachine` against that implementation; it
fails with the first divergence and a replayable counterexample. Tests may also ask for the
`jumpvpn_implementation` fixture (skipped when the option is absent).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from jumpvpn_core.testing.implementation import Implementation

# The kit (jumpvpn_core.testing) needs Hypothesis; it is imported only when a conformance
# run is asked for, so installing jumpvpn-core never breaks a project's plain pytest runs.

__all__ = ["ConformanceItem", "jumpvpn_implementation"]


def pytest_addoption(parser: pytest.Parser) -> None:
    """`--jumpvpn-impl`, `--jumpvpn-examples`, `--jumpvpn-seed`."""
    group = parser.getgroup("jumpvpn", "jumpvpn-core conformance")
    group.addoption("--jumpvpn-impl", default=None, metavar="package.module:factory",
                    help="run the conformance machine against this implementation")
    group.addoption("--jumpvpn-examples", type=int, default=50,
                    help="examples for the conformance run (default 50)")
    group.addoption("--jumpvpn-seed", type=int, default=0,
                    help="seed for the conformance run (default 0)")


class ConformanceItem(pytest.Item):
    """The conformance run against `--jumpvpn-impl`, as one test."""

    def runtest(self) -> None:
        """Run the machine; fail with the verdict."""
        from jumpvpn_core.testing.implementation import load_implementation
        from jumpvpn_core.testing.stateful import run_conformance

        spec = self.config.getoption("jumpvpn_impl")
        try:
            impl = load_implementation(spec)
        except ValueError as exc:
            problem = str(exc)
        else:
            problem = ""
        if problem:
            # Outside the except block: one line, not a chained "during handling" report.
            pytest.fail(f"--jumpvpn-impl: {problem}", pytrace=False)
        try:
            result = run_conformance(impl,
                                     examples=self.config.getoption("jumpvpn_examples"),
                                     seed=self.config.getoption("jumpvpn_seed"))
        finally:
            impl.close()
        if result.failure is not None:
            pytest.fail(f"{spec} does not conform:\n{result.failure.render()}", pytrace=False)

    def reportinfo(self) -> tuple[str, int | None, str]:
        """How the item is named in reports."""
        return "jumpvpn-conformance", None, self.name


def pytest_configure(config: pytest.Config) -> None:
    """With `--jumpvpn-impl`, Hypothesis keeps its files in the kit's cache directory
    (`jumpvpn_core.testing.hypothesis_setup.hypothesis_dir`), not in `.hypothesis/`."""
    if config.getoption("jumpvpn_impl", default=None):
        from jumpvpn_core.testing.hypothesis_setup import use_hypothesis_dir

        use_hypothesis_dir()


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Append the conformance item when `--jumpvpn-impl` is given."""
    spec = config.getoption("jumpvpn_impl")
    if spec:
        items.append(ConformanceItem.from_parent(session, name=f"jumpvpn-conformance[{spec}]"))


@pytest.fixture
def jumpvpn_implementation(request: pytest.FixtureRequest) -> Iterator[Implementation]:
    """The implementation named by `--jumpvpn-impl` (skips the test when absent)."""
    spec = request.config.getoption("jumpvpn_impl")
    if not spec:
        pytest.skip("no --jumpvpn-impl given")
    from jumpvpn_core.testing.implementation import load_implementation

    impl = load_implementation(spec)
    try:
        yield impl
    finally:
        impl.close()
