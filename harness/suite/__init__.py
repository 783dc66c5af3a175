"""The suite: one TOML config that runs every experiment and writes one run directory.

- ``config``: parsing and validating the TOML (``load_suite``, ``parse_suite``);
- ``runner``: the phases in order (train, export, the targets' deployment, white-box, sweep, examples,
  transfer, Square);
- ``training``, ``whitebox``, ``square``: what each phase runs;
- ``user_targets``: the user's ``[[targets]]``, opened before any work, and what applies to each (and why not);
- ``progress``: the live progress display;
- ``default.toml``: the built-in suite (the paper's tables and figures).
"""
