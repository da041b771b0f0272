"""One table maps every error to its exit code and JSON document: usage 2, a problem found
1, any other failure 1; each error names its failure."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from servepath.cli._app import (
    EXIT_PROBLEM,
    EXIT_USAGE,
    exit_code_of,
    failure_context,
    failure_document,
)
from servepath.errors import (
    BindFailed,
    ConfigError,
    EndpointError,
    LoadError,
    PortSpecError,
    ProblemFound,
    ReportNotWritten,
    ResolveError,
    ServepathError,
    StoreUnavailable,
    UsageError,
)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("bad setting"), EXIT_USAGE),
        (PortSpecError("x", "x", "not a port"), EXIT_USAGE),
        (EndpointError("host:", "no port"), EXIT_USAGE),
        (ReportNotWritten(Path("/nowhere/x.html"), "no such directory"), EXIT_USAGE),
        (ResolveError("no-such-host.invalid", "unknown name"), EXIT_PROBLEM),
        (StoreUnavailable("sqlite:///x", "no such file"), EXIT_PROBLEM),
        (LoadError("a generator process failed"), EXIT_PROBLEM),
        (ServepathError("something else failed"), EXIT_PROBLEM),
        (OSError(errno.EMFILE, "too many open files"), EXIT_PROBLEM),
    ],
)
def test_each_category_has_one_exit_code(error: BaseException, code: int) -> None:
    assert exit_code_of(error) == code


def test_config_errors_are_usage_errors_and_resolve_errors_are_problems_found() -> None:
    assert issubclass(ConfigError, UsageError)
    assert issubclass(ResolveError, ProblemFound)
    assert not issubclass(LoadError, (UsageError, ProblemFound))


def test_the_failure_document_names_the_failure_and_carries_the_context() -> None:
    failure_context(host="example.test", ports=[80])
    try:
        document = failure_document(StoreUnavailable("sqlite:///x", "no such file"))
    finally:
        failure_context()
    assert document["ok"] is False
    assert document["failure"] == "store_unavailable"
    assert "no such file" in document["message"]
    assert document["host"] == "example.test" and document["store"] == "sqlite:///x"


def test_a_plain_failure_and_an_os_error_are_named_too() -> None:
    assert failure_document(BindFailed("port 80 is in use"))["failure"] == "bind"
    assert failure_document(OSError("boom"))["failure"] == "os_error"
