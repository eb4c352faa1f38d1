"""Only what pyproject.toml cannot say yet without an experimental table: the optional C extension.

The pose store's float32 pass in C (stages/pairing/_pose_kernel.c). Optional: where no C compiler is found the install goes
on without it and the index runs the same computation in numpy (slower; it logs a warning when it opens).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("humanstyle.stages.pairing._pose_kernel", ["stages/pairing/_pose_kernel.c"],
                             extra_compile_args=["-O3", "-fno-math-errno", "-fno-trapping-math"], optional=True)])
