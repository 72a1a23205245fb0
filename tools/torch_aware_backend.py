"""PEP 517 build backend: setuptools, able to see the torch installed where pyfit goes.

pip builds in an isolated environment that holds only the build requirements, so
setup.py would not find torch and pyfit would lose its compiled ops. Listing torch
as a build requirement would fetch a second, multi-GB torch with possibly another
ABI. Instead, this backend appends the running interpreter's own site-packages
(the environment pip installs into) to the END of sys.path, so setup.py compiles
against that torch while the isolated setuptools still comes first.
"""

import sys
import sysconfig

from setuptools import build_meta as _setuptools


def _see_target_site_packages():
    # The isolated env's scripts run with the target interpreter; sysconfig still
    # names that interpreter's (venv's) site-packages even though pip hid them.
    for key in ("purelib", "platlib"):
        path = sysconfig.get_paths()[key]
        if path not in sys.path:
            sys.path.append(path)


_see_target_site_packages()

# Never ask for torch here: only what setuptools itself needs.
get_requires_for_build_wheel = _setuptools.get_requires_for_build_wheel
get_requires_for_build_sdist = _setuptools.get_requires_for_build_sdist
get_requires_for_build_editable = _setuptools.get_requires_for_build_editable
prepare_metadata_for_build_wheel = _setuptools.prepare_metadata_for_build_wheel
prepare_metadata_for_build_editable = _setuptools.prepare_metadata_for_build_editable
build_wheel = _setuptools.build_wheel
build_sdist = _setuptools.build_sdist
build_editable = _setuptools.build_editable
