"""Package layout (metadata lives in pyproject.toml): which folders install under which import name.

``tools/`` installs as ``humans.tools`` so that the ``humans`` console command (the main job) ships in
the wheel without a top-level ``tools`` package.
"""
from setuptools import find_packages, setup

TOP_LEVEL = ["shared", "curation", "pretrain", "heads"]  # import names == folder names
UNDER_HUMANS = ["tools"]  # folder -> humans.<folder>

packages = ["humans"]
package_dir = {"humans": "humans"}
for top in TOP_LEVEL:
    packages += [top] + [f"{top}.{p}" for p in find_packages(top)]
for folder in UNDER_HUMANS:
    package_dir[f"humans.{folder}"] = folder
    packages += [f"humans.{folder}"] + [f"humans.{folder}.{p}" for p in find_packages(folder)]

setup(packages=packages, package_dir=package_dir)
