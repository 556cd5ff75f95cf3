"""Build workload/Dockerfile into a local image (`make image`), with Docker when its daemon answers, else Podman.

Usage: python scripts/build_image.py [--tag imdb-sentiment-api:dev]

- Pip's configuration on this machine (`pip config list`: indexes, find-links, constraints, CA bundle) reaches
  the build as build secrets (`pip.conf`, `pip-cert`), mounted for the one RUN step that installs, never baked
  into a layer. Podman also mounts the local folders and files that configuration names (a find-links folder, a
  file:// index, a constraints file) read-only at the same path for the build only; Docker cannot, so it
  leaves those entries out and says so.
- Podman runs with a generated containers.conf (under .cache/podman/, unless CONTAINERS_CONF is set): runc when
  it is installed (crun needs cgroup features some machines lack), and default ulimits no higher than this
  shell's own hard limits (Podman's defaults are higher, and runc fails to set them where those are lower).
- A base image that cannot be pulled is replaced by a stand-in of the same Debian release built from Debian
  packages with mmdebstrap and tagged with the `FROM` name; the script says so on stderr. The stand-in stays in
  the engine's local storage, so only the first build on a machine pays for it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONTEXT_DIR = REPO_ROOT / "workload"
DOCKERFILE = CONTEXT_DIR / "Dockerfile"
DEFAULT_TAG = "imdb-sentiment-api:dev"
PODMAN_CONF = REPO_ROOT / ".cache" / "podman" / "containers.conf"
# Where the Dockerfile mounts the `pip-cert` secret; the generated pip.conf points pip's `cert` there.
CERT_TARGET = "/run/secrets/pip-cert"
# pip settings whose values are local paths (space- or newline-separated lists for find-links).
PATH_SETTINGS = ("find-links", "constraint", "requirement")
INDEX_SETTINGS = ("index-url", "extra-index-url")
# Podman's default container ulimits, no higher than this shell's hard limits nor than these caps (runc was
# refused nproc=96365 under a hard limit of 96365 on these machines; 32768 works).
ULIMIT_CAPS = {"nofile": (resource.RLIMIT_NOFILE, 20000), "nproc": (resource.RLIMIT_NPROC, 32768)}
# Official python images are tagged python:<version>-slim-<Debian release>.
PYTHON_SLIM = re.compile(r"^(?:docker\.io/(?:library/)?)?python:(?P<version>[\d.]+)-slim-(?P<release>[a-z]+)$")
# A stand-in for the official image carries the id of the recipe it was built from, so a new recipe rebuilds it.
STAND_IN_LABEL = "org.imdb-sentiment.stand-in-recipe"
MMDEBSTRAP_HOOKS = Path("/usr/share/mmdebstrap/hooks")
# debian:*-slim's dpkg path excludes and includes (debuerreotype's .slimify-excludes and .slimify-includes).
SLIM_EXCLUDES = (
    "/usr/share/doc/*",
    "/usr/share/groff/*",
    "/usr/share/info/*",
    "/usr/share/linda/*",
    "/usr/share/lintian/overrides/*",
    "/usr/share/locale/*",
    "/usr/share/man/*",
)
SLIM_INCLUDES = (
    "/usr/share/doc/*/copyright",
    "/usr/share/locale/all_languages",
    "/usr/share/locale/currency/*",
    "/usr/share/locale/l10n/*",
    "/usr/share/locale/languages",
    "/usr/share/locale/locale.alias",
)
# What the official image's build deletes from its Python (find's expression): test suites and bytecode.
PYTHON_LEFTOVERS = (
    "\\( \\( -type d -a \\( -name test -o -name tests -o -name idle_test \\) \\) "
    "-o \\( -type f -a \\( -name '*.pyc' -o -name '*.pyo' \\) \\) \\)"
)


class BuildError(Exception):
    """A one-line reason why the image could not be built."""


@dataclass(frozen=True)
class Engine:
    """A container engine CLI and the environment it runs with."""

    name: str  # "docker" or "podman"
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    def run(self, *args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([self.name, *args], env=self.env, capture_output=capture, text=True)
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout or "").strip().splitlines()
            raise BuildError(f"{self.name} {args[0]} failed: {detail[-1] if detail else f'exit {result.returncode}'}")
        return result


def podman_containers_conf() -> Path:
    """Write the containers.conf this machine's Podman needs (see the module docstring) and return its path."""
    ulimits = []
    for name, (limit, cap) in ULIMIT_CAPS.items():
        _, hard = resource.getrlimit(limit)
        value = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
        ulimits.append(f'"{name}={value}:{value}"')
    lines = ["[containers]", f"default_ulimits = [{', '.join(ulimits)}]"]
    if shutil.which("runc"):
        lines += ["", "[engine]", 'runtime = "runc"']
    PODMAN_CONF.parent.mkdir(parents=True, exist_ok=True)
    PODMAN_CONF.write_text("\n".join(lines) + "\n")
    return PODMAN_CONF


def find_engine() -> Engine:
    """Docker if its daemon answers, else Podman (CONTAINER_ENGINE=docker|podman forces one)."""
    wanted = os.environ.get("CONTAINER_ENGINE")
    docker_works = shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    if wanted == "docker" or (wanted is None and docker_works):
        return Engine("docker", {**os.environ, "DOCKER_BUILDKIT": "1"})
    if not shutil.which("podman"):
        raise BuildError("no container engine: no Docker daemon answers and podman is not installed")
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(podman_containers_conf()))
    return Engine("podman", env)


def base_images(dockerfile: Path = DOCKERFILE) -> list[str]:
    """The images the Dockerfile's FROM lines name, leaving out its own stages."""
    stages: set[str] = set()
    images: list[str] = []
    for image, stage in re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", dockerfile.read_text(), re.M | re.I):
        if image not in stages and image not in images:
            images.append(image)
        if stage:
            stages.add(stage)
    return images


def ensure_base_image(engine: Engine, image: str, cache_dir: Path) -> None:
    """Have `image` locally: already there, pulled, or (for python:*-slim-<release>) a Debian stand-in, rebuilt
    when it was built from an older recipe."""
    match = PYTHON_SLIM.match(image)
    inspected = engine.run("image", "inspect", "--format", "{{json .Config}}", image, check=False)
    if inspected.returncode == 0:
        config = json.loads(inspected.stdout) or {}
        if match is None or not is_outdated_stand_in(config, match["release"]):
            return
        print(f"note: the stand-in for {image} was built from an older recipe; rebuilding it", file=sys.stderr)
    else:
        pulled = engine.run("pull", image, check=False)
        if pulled.returncode == 0:
            return
        reason = (pulled.stderr.strip().splitlines() or ["unknown error"])[-1]
        if not match:
            raise BuildError(f"cannot pull the base image {image} ({reason}) and no stand-in is known for it")
        print(
            f"warning: cannot pull {image} ({reason}); building a stand-in from Debian {match['release']} packages "
            f"(Debian's python3, not Python {match['version']}) and tagging it {image}",
            file=sys.stderr,
        )
    build_stand_in(engine, image, match["release"], cache_dir)


def is_outdated_stand_in(config: dict, release: str) -> bool:
    """Whether a local python:*-slim image (its `.Config`) is a stand-in from another recipe than today's. The
    official image sets PYTHON_VERSION; stand-ins carry their recipe's id (those from before the label, none)."""
    labels = config.get("Labels") or {}
    if STAND_IN_LABEL in labels:
        return labels[STAND_IN_LABEL] != stand_in_recipe_id(release)
    return not any(variable.startswith("PYTHON_VERSION=") for variable in config.get("Env") or [])


def stand_in_recipe(release: str) -> list[str]:
    """mmdebstrap's arguments for a stand-in of python:*-slim-<release>, as the official image is made: Debian's
    minbase with the slim variant's dpkg excludes, the official image's runtime packages (ca-certificates,
    netbase, tzdata), Python (Debian's, with venv) stripped of bytecode and test suites, `python` on PATH."""
    return [
        "--variant=minbase",
        "--include=ca-certificates,netbase,tzdata,python3-venv",
        # Merge /usr in a hook: the usrmerge package mmdebstrap otherwise installs pulls in perl (45 MB).
        f"--hook-dir={MMDEBSTRAP_HOOKS / 'merged-usr'}",
        *(f"--dpkgopt=path-exclude={path}" for path in SLIM_EXCLUDES),
        *(f"--dpkgopt=path-include={path}" for path in SLIM_INCLUDES),
        f'--customize-hook=find "$1"/usr/lib/python3* -depth {PYTHON_LEFTOVERS} -exec rm -rf {{}} +',
        '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
        '--customize-hook=ln -s /usr/bin/python3 "$1/usr/local/bin/python"',
        release,
    ]


def stand_in_recipe_id(release: str) -> str:
    return hashlib.sha256(json.dumps(stand_in_recipe(release)).encode()).hexdigest()[:12]


def build_stand_in(engine: Engine, image: str, release: str, cache_dir: Path) -> None:
    """A Debian root filesystem made like the official image (see stand_in_recipe), tagged `image`."""
    if not shutil.which("mmdebstrap"):
        raise BuildError("the base image cannot be pulled and mmdebstrap is not installed to build a stand-in")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
        rootfs = Path(scratch) / "rootfs.tar"
        subprocess.run(["mmdebstrap", "--quiet", *stand_in_recipe(release), str(rootfs)], check=True)
        engine.run(
            "import",
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            "ENV LANG=C.UTF-8",
            "--change",
            f"LABEL {STAND_IN_LABEL}={stand_in_recipe_id(release)}",
            "--change",
            'CMD ["python3"]',
            str(rootfs),
            qualified(image),
        )


def qualified(image: str) -> str:
    """Docker Hub's full name for a short one (python:tag -> docker.io/library/python:tag), as FROM resolves it."""
    first = image.split("/", 1)[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        return image
    return f"docker.io/{image if '/' in image else 'library/' + image}"


@dataclass
class PipBuildConfig:
    """Pip's configuration for the build: the pip.conf text, the CA bundle, and the local paths it names."""

    text: str
    cert: Path | None
    local_paths: list[Path]


def pip_settings() -> dict[str, dict[str, str]]:
    """This machine's effective pip settings by section, environment variables (`:env:`) over the files."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    sections: dict[str, dict[str, str]] = {}
    for line in sorted(listed.splitlines(), key=lambda entry: entry.startswith(":env:")):
        key, _, value = line.partition("=")
        section, _, name = key.rpartition(".")
        section = "global" if section == ":env:" else section
        sections.setdefault(section, {})[name] = value.strip().strip("'\"")
    return sections


def local_path(entry: str) -> Path | None:
    """The local file or folder a pip location names (a path or a file:// URL), or None for a remote one."""
    parsed = urllib.parse.urlparse(entry)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    if not parsed.scheme and entry.startswith("/"):
        return Path(entry)
    return None


def pip_build_config(settings: dict[str, dict[str, str]], keep_local_paths: bool) -> PipBuildConfig:
    """pip.conf for the build: `cert` points at the mounted secret, and local locations are kept (mounted at the
    same path) or, where the engine cannot mount them, left out."""
    config: dict[str, dict[str, str]] = {}
    cert: Path | None = None
    local_paths: list[Path] = []
    for section, values in settings.items():
        config[section] = {}
        for name, value in values.items():
            if name == "cert":
                cert = Path(value)
                config[section][name] = CERT_TARGET
                continue
            if name not in PATH_SETTINGS + INDEX_SETTINGS:
                config[section][name] = value
                continue
            kept = []
            for entry in value.split():
                path = local_path(entry)
                if path is None:
                    kept.append(entry)
                elif keep_local_paths:
                    kept.append(entry)
                    # A file:// index's pages link to its files relative to the page (../../files/x.whl): mount
                    # the folder that holds its `simple` tree.
                    local_paths.append(path.parent if name in INDEX_SETTINGS else path)
                else:
                    print(
                        f"warning: pip's {name} {entry} is local; Docker cannot mount it into the build",
                        file=sys.stderr,
                    )
            if kept:
                config[section][name] = " ".join(kept)
    lines = []
    for section, values in config.items():
        lines += [f"[{section}]", *(f"{name} = {value}" for name, value in values.items())]
    return PipBuildConfig("\n".join(lines) + "\n", cert, [path for path in local_paths if path.exists()])


def source_commit() -> str:
    result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else ""


def build(engine: Engine, tag: str, scratch: Path) -> None:
    pip = pip_build_config(pip_settings(), keep_local_paths=engine.name == "podman")
    pip_conf = scratch / "pip.conf"
    pip_conf.write_text(pip.text)
    args = ["build", "--file", str(DOCKERFILE), "--tag", tag, "--build-arg", f"GIT_COMMIT={source_commit()}"]
    args += ["--secret", f"id=pip.conf,src={pip_conf}"]
    if pip.cert is not None:
        args += ["--secret", f"id=pip-cert,src={pip.cert}"]
    if engine.name == "podman":
        # Docker's format: the OCI format has no HEALTHCHECK, and Podman would drop it.
        args += ["--format", "docker"]
        args += [arg for path in pip.local_paths for arg in ("--volume", f"{path}:{path}:ro")]
    engine.run(*args, str(CONTEXT_DIR), capture=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="build workload/Dockerfile into a local image")
    parser.add_argument("--tag", default=DEFAULT_TAG, help=f"image name:tag (default {DEFAULT_TAG})")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        engine = find_engine()
        cache_dir = REPO_ROOT / ".cache" / "image"
        for image in base_images():
            ensure_base_image(engine, image, cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
            build(engine, args.tag, Path(scratch))
    except (BuildError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"built {args.tag} with {engine.name} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
