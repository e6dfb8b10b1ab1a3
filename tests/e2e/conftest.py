"""End-to-end tests: tasker as its users meet it — the ``tasker`` command in a real
subprocess, the examples, every code block of README.md and docs/*.md, the example test suite
of tasker.testing, the dashboard served over HTTP by a real server and driven in a real
browser, and what none of these may expose.

They may use everything of tests/conftest.py (``db``, ``child_env``, ``Backend``, ``ROOT``) and
tests/helpers.py (``tasker_cli``, ``run_script``, ``free_port`` …), and the browser tests
tests/e2e/browser.py (the dashboard in its own process, a page of Chromium); they start
processes and servers of their own and stop each by PID.
"""
