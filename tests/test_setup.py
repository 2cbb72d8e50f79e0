"""The project's set-up files agree with each other (pins in pyproject.toml, environment.yml, Makefile)."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return sorted(project["dependencies"] + extras["dev"] + extras["bench"])


def environment_pins():
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = lines.index("  - pip:")
    return sorted(line.strip()[2:] for line in lines[start + 1:] if line.strip().startswith("- "))


def test_environment_yml_names_the_same_packages_and_pins_as_pyproject():
    assert environment_pins() == pyproject_pins()


def test_every_dependency_is_pinned_exactly():
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][^,;\s]*", pin) for pin in pyproject_pins()), pyproject_pins()


def test_makefile_installs_the_same_torch_pins_and_the_documented_basicsr():
    makefile = (ROOT / "Makefile").read_text()
    pins = dict(pin.split("==") for pin in pyproject_pins())
    assert f"torch=={pins['torch']} torchvision=={pins['torchvision']}" in makefile
    assert "--no-build-isolation basicsr==1.4.2" in makefile
    assert "basicsr==1.4.2" in (ROOT / "environment.yml").read_text()


def test_opencv_is_pinned_below_5_where_haar_cascades_exist():
    pins = dict(pin.split("==") for pin in pyproject_pins())
    assert int(pins["opencv-python"].split(".")[0]) == 4


def test_readme_names_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make workbook" in readme and "make test" in readme


def test_ci_runs_the_test_command_named_in_the_readme():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
