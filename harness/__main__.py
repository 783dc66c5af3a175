import sys

try:
    from harness.errors import HarnessError
    from harness.threads import env_threads

    try:  # before torch loads: OpenMP would print its own warning about a bad value first
        env_threads()
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    from harness.cli import main
except KeyboardInterrupt:  # Ctrl-C while Python imports the harness: one line, the shell's code for SIGINT
    print("interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
