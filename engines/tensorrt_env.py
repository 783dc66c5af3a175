"""The installed TensorRT, read without importing it: its distributions, their CUDA build, and what a
failure to import or start it means, in words a user can act on.

TensorRT's Python packages come in three layers: the ``tensorrt`` meta package (which requires the
front-end of one CUDA major: ``tensorrt-cu13`` for TensorRT 11, ``tensorrt-cu12`` for TensorRT 10),
the front-end ``tensorrt-cuNN``, and its two wheels ``tensorrt-cuNN-bindings`` (the ``tensorrt``
module) and ``tensorrt-cuNN-libs`` (``libnvinfer`` and friends). The wheels come from NVIDIA's own
package index, not PyPI. Builds of two CUDA majors write the same ``tensorrt`` module folder, so
installing both leaves a mixture: :func:`tensorrt_conflict` says which one to remove.

Everything here is cheap (package metadata, at most one ``dlopen`` of the driver library) and
never raises for a broken install.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import re
from dataclasses import dataclass
from typing import Any

import torch

from harness.errors import HarnessError, error_line

# Names the TensorRT packages use: tensorrt, tensorrt-cu12, tensorrt-cu12-bindings, tensorrt-cu13-libs,
# and the older unsuffixed tensorrt-bindings / tensorrt-libs. tensorrt-lean / -dispatch are other modules.
_DIST_NAME = re.compile(r"^tensorrt(?:-cu(?P<cuda>\d+))?(?:-(?P<role>bindings|libs))?$")
_REQUIRES_CUDA = re.compile(r"^tensorrt-cu(\d+)\b")
_SHARED_LIBRARY = re.compile(r"(lib[A-Za-z0-9_+-]+\.so(?:\.\d+)*)")
INDEX_HINT = "NVIDIA's package index"  # the README's "GPU install" section gives its address
MAX_LOGGED = 50  # messages kept by RecordingLogger; TensorRT can log thousands on a failed build


@dataclass(frozen=True)
class TensorrtDist:
    """One installed TensorRT distribution: its name, version, CUDA major (None when unknown) and role."""

    name: str
    version: str
    cuda: str | None
    role: str  # "meta" (tensorrt), "front-end" (tensorrt-cuNN), "bindings" or "libs"

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def tensorrt_distributions(path: list[str] | None = None) -> list[TensorrtDist]:
    """The TensorRT distributions installed on ``path`` (default ``sys.path``), sorted by name."""
    found: dict[str, TensorrtDist] = {}
    for dist in importlib.metadata.distributions(**({"path": path} if path is not None else {})):
        try:
            name = _normalized(dist.metadata["Name"] or "")
            version = dist.version or "?"
        except Exception:  # a damaged METADATA file; nothing to report about it here
            continue
        match = _DIST_NAME.match(name)
        if match is None or name in found:  # the first on the path wins, as for imports
            continue
        cuda, role = match["cuda"], match["role"]
        if role is None:
            role = "front-end" if cuda else "meta"
        if role == "meta":
            cuda = _required_cuda(dist)
        found[name] = TensorrtDist(name, version, cuda, role)
    return sorted(found.values(), key=lambda d: d.name)


def _required_cuda(dist: importlib.metadata.Distribution) -> str | None:
    """The CUDA major of the front-end the ``tensorrt`` meta package requires (``tensorrt-cu13==...``)."""
    for requirement in dist.requires or []:
        match = _REQUIRES_CUDA.match(_normalized(requirement.split(";")[0].strip()))
        if match:
            return match[1]
    return None


def tensorrt_packages(path: list[str] | None = None) -> list[str]:
    """``"name version"`` of every installed TensorRT distribution (for the ``engines`` command)."""
    return [str(d) for d in tensorrt_distributions(path)]


def tensorrt_cuda_majors(path: list[str] | None = None) -> list[str]:
    """The CUDA majors of the installed TensorRT builds, sorted (more than one is a conflict)."""
    return sorted({d.cuda for d in tensorrt_distributions(path) if d.cuda}, key=int)


def tensorrt_conflict(path: list[str] | None = None) -> str | None:
    """One line naming the TensorRT builds installed side by side and which to uninstall, or None.

    The build to keep is the one for torch's CUDA major (device buffers are torch CUDA tensors);
    with a CPU-only torch, the one for the driver's CUDA major (``nvidia-smi``).
    """
    dists = tensorrt_distributions(path)
    majors = sorted({d.cuda for d in dists if d.cuda}, key=int)
    if len(majors) < 2:
        return None
    by_major = {m: [d for d in dists if d.cuda == m] for m in majors}
    listing = "; ".join(f"CUDA {m}: {', '.join(map(str, ds))}" for m, ds in by_major.items())
    torch_major, driver_major = _cuda_major(torch.version.cuda), _cuda_major(driver_cuda_version())
    keep, why = (torch_major, "torch is built for it") if torch_major else (driver_major, "the driver's")
    if keep in by_major:
        remove = [d.name for m, ds in by_major.items() if m != keep for d in ds]
        advice = (f"keep the CUDA {keep} build ({why}): pip uninstall -y {' '.join(remove)}, then reinstall "
                  f"the CUDA {keep} build, whose module files the other one overwrote")
    else:
        advice = " or ".join(f"pip uninstall -y {' '.join(d.name for d in ds)}" for ds in by_major.values())
        advice = f"keep the build for your driver's CUDA major (nvidia-smi) and remove the other: {advice}"
    return f"TensorRT builds for {len(majors)} CUDA majors are installed side by side and share the tensorrt " \
           f"module ({listing}); {advice}"


def _cuda_major(version: str | None) -> str | None:
    return version.split(".")[0] if version else None


def driver_cuda_version() -> str | None:
    """The newest CUDA version the installed NVIDIA driver supports (``"12.4"``), or None without a driver."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
        value = ctypes.c_int(0)
        if libcuda.cuDriverGetVersion(ctypes.byref(value)) != 0 or value.value <= 0:
            return None
    except (OSError, AttributeError):
        return None
    return f"{value.value // 1000}.{value.value % 1000 // 10}"


def _build_cuda(path: list[str] | None = None) -> str:
    """The CUDA major(s) of the installed tensorrt build for messages ("13", "12/13"), "NN" when unknown."""
    majors = tensorrt_cuda_majors(path)
    return "/".join(majors) if majors else "NN"


def import_failure(error: BaseException) -> str:
    """Why ``import tensorrt`` failed, in one line that names what is missing and the fix.

    ``ModuleNotFoundError`` for ``tensorrt`` itself: not installed. For another module: the package is
    there but its compiled bindings are not. ``ImportError`` / ``OSError`` naming a shared library:
    which library (TensorRT's own, the CUDA runtime's or the driver's) and what installs it.
    """
    if isinstance(error, ModuleNotFoundError):
        if error.name == "tensorrt":
            installed = tensorrt_packages()
            if not installed:
                return f"tensorrt not installed (pip install 'harness[gpu]' with {INDEX_HINT})"
            return (f"the tensorrt module is missing although TensorRT packages are installed "
                    f"({', '.join(installed)}): the bindings wheel did not install, or uninstalling another "
                    f"build removed the module files; reinstall the tensorrt build you keep from {INDEX_HINT}")
        return (f"tensorrt is installed but its compiled bindings are missing ({error_line(error)}): the "
                f"tensorrt-cuNN-bindings wheel did not install; reinstall tensorrt from {INDEX_HINT}")
    text = error_line(error)
    match = _SHARED_LIBRARY.search(text)
    if not isinstance(error, ImportError | OSError) or match is None:
        return f"tensorrt is installed but cannot be imported: {type(error).__name__}: {text}"
    library = match[1]
    if library.startswith(("libnvinfer", "libnvonnxparser")):
        return (f"tensorrt is installed but its native library {library} cannot be loaded ({text}): the "
                f"tensorrt-cu{_build_cuda()}-libs wheel is missing or for another version; it comes from "
                f"{INDEX_HINT}, not PyPI: reinstall tensorrt with that index")
    if library.startswith("libcuda.so"):
        return (f"tensorrt cannot load the NVIDIA driver library {library} ({text}): no NVIDIA driver on this "
                "machine; check nvidia-smi")
    if library.startswith(("libcudart", "libcublas", "libcudnn", "libnvrtc", "libnvJitLink")):
        return (f"tensorrt cannot load the CUDA runtime library {library} ({text}): this tensorrt is the CUDA "
                f"{_build_cuda()} build; install the tensorrt build for your CUDA (tensorrt-cu12 or tensorrt-cu13) "
                f"from {INDEX_HINT}")
    return f"tensorrt cannot load the native library {library}: {text}"


class LogRecorder:
    """Bounded storage of TensorRT log messages (first line of each), shared by the logger class below."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def add(self, kind: str, message: str) -> None:
        bucket = self.errors if kind == "error" else self.warnings
        if len(bucket) < MAX_LOGGED:
            bucket.append(message.strip().splitlines()[0] if message.strip() else kind)

    def first(self, containing: str = "") -> str | None:
        """The first error (then warning) containing ``containing``, or None."""
        for message in (*self.errors, *self.warnings):
            if containing.lower() in message.lower():
                return message
        return None


def recording_logger(trt: Any) -> Any:
    """A ``trt.ILogger`` that keeps errors and warnings (``.record``), so failures can say why in one line.

    TensorRT reports "CUDA initialization failure" as a warning in some releases and as an error in
    others, so both are kept. The logger must outlive every TensorRT object created with it.
    """
    severity = trt.ILogger.Severity

    class RecordingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.record = LogRecorder()

        def log(self, level: Any, msg: str) -> None:
            if level in (severity.INTERNAL_ERROR, severity.ERROR):
                self.record.add("error", str(msg))
            elif level == severity.WARNING:
                self.record.add("warning", str(msg))

    return RecordingLogger()


def start_failure(error: TypeError, what: str, version: str, record: LogRecorder | None = None) -> HarnessError:
    """The one-line error for ``trt.Builder`` / ``trt.Runtime`` raising TypeError (pybind11's
    "factory function returned nullptr"): TensorRT could not start CUDA.

    Names the likely causes (no GPU visible, a driver older than the CUDA major of the tensorrt build)
    and what to check. A TypeError of another kind is a bug, not an environment problem: it is
    returned as a HarnessError too, with its own text, so the user still gets one line.
    """
    text = error_line(error)
    if "nullptr" not in text:
        return HarnessError(f"{what} failed in TensorRT {version}: {text}")
    logged = (record.first("cuda") or record.first()) if record is not None else None
    build = _build_cuda()
    driver = driver_cuda_version()
    driver_text = f"this driver supports CUDA {driver}" if driver else "no NVIDIA driver library found"
    return HarnessError(
        f"TensorRT {version} could not start CUDA ({what} returned nullptr"
        f"{': ' + logged if logged else ''}): no NVIDIA GPU visible, or the driver is older than the "
        f"CUDA {build} this tensorrt build needs ({driver_text}); check nvidia-smi (its 'CUDA Version' must be "
        f"at least the tensorrt build's, {build}.x) and install the tensorrt build for your driver's CUDA "
        f"major, e.g. tensorrt-cu12 for CUDA 12 (README: GPU install)")
