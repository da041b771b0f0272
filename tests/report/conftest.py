"""The report pages' tests share one real Chromium (see tests/helpers/browser.py)."""

from tests.helpers.browser import browser  # noqa: F401  (the fixture)
