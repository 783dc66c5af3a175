"""harness: deployment-robustness harness for semantic segmentation."""

__version__ = "0.1.0"
