"""Shared test setup. Fixtures live in plugin modules, one per concern: add yours to the list."""

pytest_plugins = ["tests.fixtures_servers", "tests.fixtures_raychat", "tests.fixtures_captcha",
                  "tests.fixtures_oidc", "tests.fixtures_push", "tests.fixtures_faults"]
