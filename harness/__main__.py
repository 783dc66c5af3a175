import os
import sys

# Before torch loads OpenMP: its threads otherwise spin while they wait for work, and where other processes
# compete for the cores a spinning thread holds the core its partner needs, so every parallel region stalls
# (measured on 2 cores at a load average of 4.5: a training step 10x slower with 2 threads than with 1;
# passive waiting brings it back to within 20 %). Results do not depend on it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from harness.cli import main  # noqa: E402

sys.exit(main())
