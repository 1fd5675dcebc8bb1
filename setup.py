"""Ships the configs in the wheel: ``configs/**`` and ``projects/<Name>/configs/**`` are copied
to ``fastreid_ext/_configs/`` with their relative layout (``_BASE_`` paths that climb out of a
project's folder keep resolving), where :func:`fastreid_ext.config.find_config` finds them by
name. Everything else is in ``pyproject.toml``; a source checkout reads the configs in place."""
import glob
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def shipped_configs():
    pattern = [os.path.join("configs", "**", "*.yml"), os.path.join("projects", "*", "configs", "**", "*.yml")]
    return sorted(p for pat in pattern for p in glob.glob(os.path.join(HERE, pat), recursive=True))


class BuildWithConfigs(build_py):
    def run(self):
        super().run()
        if self.editable_mode:
            return
        for path in shipped_configs():
            rel = os.path.relpath(path, HERE)
            dest = os.path.join(self.build_lib, "fastreid_ext", "_configs", rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(path, dest)


setup(cmdclass={"build_py": BuildWithConfigs})
