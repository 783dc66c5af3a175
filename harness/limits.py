"""The documented bounds of the harness's numeric settings, shared by the CLI's argument types and the suite file.

Each bound is a promise in the README: a value outside it is refused with one line before any work,
instead of failing deep inside numpy, torch or the allocator (or, worse, running with a silent wrong value).
"""

MAX_SEED = 2**32 - 1  # numpy's SeedSequence/RandomState limit; torch accepts it too
MIN_IMAGE_SIZE = 32  # the FCN backbones downsample by 32
MAX_IMAGE_SIZE = 2048  # 4.2 M pixels per image; far larger inputs exhaust memory in the backbones
# The synthetic data generates a whole split (1000 train images) at once: 512 px is 1 GiB of uint8 pixels.
MAX_SYNTHETIC_IMAGE_SIZE = 512
MIN_CLASSES = 2  # as a checkpoint's class_names (at most harness.data.base.MAX_CLASSES, 255)
MAX_BATCH = 4096  # images per forward/backward batch (--batch-size, --engine-batch, --max-batch)
MAX_IMAGES = 1_000_000  # --n-images, --n-train, --calibration-images
MAX_EPOCHS = 10_000
MAX_STEPS = 100_000  # attack iterations (--steps, --sweep-steps, pgd-N)
MAX_QUERIES = 1_000_000  # Square Attack query budget per image
MAX_POINTS = 100.0  # tolerances in percentage points
MAX_NAME = 100  # a suite's name: runs/NAME must stay a short, valid file name
MAX_DECAY = 10.0  # MI-FGSM momentum decay mu (the paper: 1.0)
MAX_THREADS = 4096  # intra-op threads (a suite's threads, OMP_NUM_THREADS)
MAX_SWEEP_POINTS = 100  # PGD iteration counts of one sweep curve
