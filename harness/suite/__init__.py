"""The suite: one TOML config that runs every experiment and writes one run directory.

- ``config``: parsing and validating the TOML (``load_suite``, ``parse_suite``);
- ``runner``: the phases in order (train, export, white-box, sweep, Square, transfer, examples);
- ``training``, ``whitebox``, ``square``: what each phase runs;
- ``progress``: the live progress display;
- ``default.toml``: the built-in suite (the paper's tables and figures).
"""
