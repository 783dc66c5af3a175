import signal
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

code = 130  # main turns a Ctrl-C during the work into 130 itself
try:
    code = main()
    # The work is done and its files are written: a Ctrl-C while Python shuts down (torch's exit handlers take a
    # moment) must not turn the exit into a death by SIGINT, which a caller reads as -2, not as main's code.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
except KeyboardInterrupt:  # after main returned, before the line above: main's code stands
    pass
sys.exit(code)
