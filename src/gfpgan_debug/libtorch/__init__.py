"""The LibTorch runner: ``runner.cpp`` compiled with g++ against the LibTorch inside the torch wheel.

The wheel carries LibTorch's headers (``torch/include``, ``torch/include/torch/csrc/api/include``) and
libraries (``torch/lib``), so no separate LibTorch download is needed. The command is plain g++ (CMake's
``find_package(Torch)`` on this CUDA wheel demands the CUDA toolkit)::

    g++ -std=c++20 -O2 runner.cpp -I<torch>/include -I<torch>/include/torch/csrc/api/include
        $(pkg-config --cflags opencv4) -L<torch>/lib -Wl,-rpath,<torch>/lib
        -Wl,--no-as-needed -ltorch -ltorch_cpu -lc10 -Wl,--as-needed $(pkg-config --libs opencv4)

On a CUDA wheel ``-ltorch_cuda -lc10_cuda`` join the list, so ``--device cuda`` works where there is a GPU.
``--no-as-needed`` keeps libtorch_cpu (and libtorch_cuda) linked although runner.cpp names none of their
symbols directly (their operators register themselves when the library loads); the rpath lets the binary
find the venv's libraries at run time.
The binary is cached under build/libtorch/, named by a hash of the source, the command and the compiler,
so editing runner.cpp (or upgrading torch) rebuilds it; it is compiled into a temporary file and renamed.
"""
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from gfpgan_debug.errors import ArtifactError, GfpganDebugError, ImageError
from gfpgan_debug.export import BUILD_DIR, file_lock, write_atomically

SOURCE = Path(__file__).with_name("runner.cpp")
RUNNER_DIR = BUILD_DIR / "libtorch"
APT_HINT = "install them with: apt-get install -y g++ libopencv-dev pkg-config"


def torch_paths() -> Tuple[Path, Path, Path]:
    """(include, C++ API include, lib) folders of the installed torch wheel."""
    root = Path(torch.__file__).resolve().parent
    return root / "include", root / "include" / "torch" / "csrc" / "api" / "include", root / "lib"


def opencv_flags() -> Tuple[List[str], List[str]]:
    """OpenCV's compile and link flags from pkg-config; a GfpganDebugError when either is missing."""
    if shutil.which("pkg-config") is None:
        raise GfpganDebugError(f"pkg-config not found: it locates OpenCV's C++ headers for the LibTorch runner; "
                               f"{APT_HINT}")
    flags = {}
    for kind in ("--cflags", "--libs"):
        result = subprocess.run(["pkg-config", kind, "opencv4"], capture_output=True, text=True)
        if result.returncode != 0:
            raise GfpganDebugError(f"OpenCV C++ development files (opencv4.pc, opencv2/*.hpp) not found: "
                                   f"the LibTorch runner preprocesses images with OpenCV; {APT_HINT}")
        flags[kind] = result.stdout.split()
    return flags["--cflags"], flags["--libs"]


def compiler() -> str:
    found = shutil.which(os.environ.get("CXX", "g++"))
    if found is None:
        raise GfpganDebugError(f"no C++ compiler: g++ builds the LibTorch runner ({SOURCE.name}); {APT_HINT}")
    return found


def compile_command(source: Path, output: Path) -> List[str]:
    include, api_include, lib = torch_paths()
    cflags, libs = opencv_flags()
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)  # must match the wheel's, or std::string symbols do not link
    # a CUDA wheel: link its CUDA half too, so --device cuda works where a GPU exists (it loads fine without one)
    cuda = ["-ltorch_cuda", "-lc10_cuda"] if (lib / "libtorch_cuda.so").exists() else []
    return [compiler(), "-std=c++20", "-O2", f"-D_GLIBCXX_USE_CXX11_ABI={abi}", str(source), "-o", str(output),
            f"-I{include}", f"-I{api_include}", *cflags,
            f"-L{lib}", f"-Wl,-rpath,{lib}", "-Wl,--no-as-needed", "-ltorch", "-ltorch_cpu", "-lc10", *cuda,
            "-Wl,--as-needed", *libs]


def build_key(source: Path) -> str:
    """Hash of the source text, the compile command (with placeholder paths) and the compiler's version."""
    digest = hashlib.sha256(source.read_bytes())
    digest.update(" ".join(compile_command(Path("SRC"), Path("OUT"))).encode())
    version = subprocess.run([compiler(), "--version"], capture_output=True, text=True).stdout
    digest.update(version.encode())
    digest.update(torch.__version__.encode())
    return digest.hexdigest()


def build_runner(source: Path = SOURCE, out_dir: Optional[Path] = None, force: bool = False) -> Path:
    """The compiled runner for this source, built if not cached (about 20-60 s of g++), else reused.

    ``build/libtorch/gfpgan_runner-<hash>.json`` beside the binary records the command and the build time.
    """
    out_dir = Path(out_dir or RUNNER_DIR)
    key = build_key(Path(source))
    binary = out_dir / f"gfpgan_runner-{key[:16]}"
    info = binary.with_name(binary.name + ".json")
    with file_lock(out_dir / f".{binary.name}.lock"):
        if binary.is_file() and info.is_file() and os.access(binary, os.X_OK) and not force:
            return binary

        def compile_into(tmp: Path):
            command = compile_command(Path(source), tmp)
            start = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                tail = "\n".join(result.stderr.strip().splitlines()[-25:])
                raise GfpganDebugError(f"{source}: g++ failed (exit {result.returncode}):\n{tail}")
            seconds = time.perf_counter() - start
            info.write_text(json.dumps(dict(command=command[:5] + ["-o", str(binary)] + command[7:],
                                            seconds=round(seconds, 2), key=key), indent=2) + "\n")
            tmp.chmod(0o755)

        write_atomically(binary, compile_into)
    return binary


def build_seconds(binary: Path) -> Optional[float]:
    """How long g++ took to build this binary (from its JSON record)."""
    info = binary.with_name(binary.name + ".json")
    return json.loads(info.read_text()).get("seconds") if info.is_file() else None


# ---------------------------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------------------------


def run_runner(model: Optional[Path], inputs: Sequence, device: str = "cpu", threads: int = 0,
               preprocess_only: bool = False, size: int = 512) -> Tuple[List[Dict[str, np.ndarray]], List[float]]:
    """Run the C++ program once on all ``inputs`` (float32 (1, 3, S, S) arrays, or image paths to be
    preprocessed in C++). Returns, per frame, {name: array} (``input`` for image inputs, then ``image``,
    ``rgb_8`` …) and the per-frame forward time in seconds measured inside the program."""
    binary = build_runner()
    if model is not None and not Path(model).is_file():
        raise ArtifactError(f"{model}: no such TorchScript file")
    (BUILD_DIR / "tmp").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="libtorch-", dir=BUILD_DIR / "tmp") as work:
        work = Path(work)
        arguments = []
        for i, item in enumerate(inputs):
            if isinstance(item, (str, os.PathLike)):
                if not Path(item).is_file():
                    raise ImageError(f"{item}: no such image file")
                arguments.append(str(item))
            else:
                path = work / f"input_{i:05d}.npy"
                np.save(path, np.ascontiguousarray(np.asarray(item, dtype=np.float32)))
                arguments.append(str(path))
        command = [str(binary), "--out", str(work / "out"), "--device", device, "--size", str(size)]
        command += ["--preprocess-only"] if preprocess_only else ["--model", str(model)]
        command += ["--threads", str(threads)] if threads else []
        result = subprocess.run(command + arguments, capture_output=True, text=True)
        if result.returncode != 0:
            message = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.returncode}"
            raise ArtifactError(f"LibTorch runner: {message}")
        seconds = [float(line.split()[3]) / 1000 for line in result.stdout.splitlines() if line.startswith("frame ")]
        frames = []
        for i in range(len(arguments)):
            frame_dir = work / "out" / f"frame_{i:05d}"
            arrays = {p.stem: np.load(p) for p in frame_dir.glob("*.npy")}
            frames.append(dict(sorted(arrays.items(), key=lambda kv: _order(kv[0]))))
    return frames, seconds


def _order(name: str):
    """input, image, rgb_8, rgb_16, … (numeric order of the side, not alphabetical)."""
    if name == "input":
        return (0, 0)
    if name == "image":
        return (1, 0)
    return (2, int(name.split("_")[1]))


def preprocess_cpp(image_paths: Sequence, size: int = 512) -> List[np.ndarray]:
    """The (1, 3, size, size) float32 tensors the C++ program builds from these images with OpenCV."""
    frames, _ = run_runner(None, list(image_paths), preprocess_only=True, size=size)
    return [frame["input"] for frame in frames]
