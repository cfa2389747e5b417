"""Package layout (metadata lives in pyproject.toml): every top-level folder installs under one import
root, ``humans`` (``shared/`` -> ``humans.shared``, ``curation/`` -> ``humans.curation``, ...), so no
top-level name of ours can collide with another installed package (the package registry has an
unrelated ``shared``). In a source checkout ``humans/__init__.py`` maps the same names onto the
folders; ``scripts/dev/rename_imports.py`` keeps the imports on the ``humans.`` names.
"""
from setuptools import find_packages, setup

UNDER_HUMANS = ["shared", "curation", "pretrain", "heads", "tools"]  # folder -> humans.<folder>

packages = ["humans"]
package_dir = {"humans": "humans"}
for folder in UNDER_HUMANS:
    package_dir[f"humans.{folder}"] = folder
    packages += [f"humans.{folder}"] + [f"humans.{folder}.{p}" for p in find_packages(folder)]

setup(packages=packages, package_dir=package_dir)
