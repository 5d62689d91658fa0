"""Put back numpy's removed scalar aliases (np.float, np.int, ...) for legacy code, lazily.

remote-run installs this as `sitecustomize` on PYTHONPATH for every run, so scripts that still
say `np.float` work under numpy >= 1.24 without importing numpy where it is not used.
"""

import sys

ALIASES = {"float": float, "int": int, "bool": bool, "complex": complex, "object": object, "str": str}


def add_aliases(numpy):
    for name, value in ALIASES.items():
        if name not in numpy.__dict__:
            setattr(numpy, name, value)


class _AddAliasesOnImport:
    """A meta path finder (the protocol: find_spec), not a subclass of importlib.abc's: importing
    that module costs every run's interpreter about 40 ms (it pulls in importlib.resources)."""

    def find_spec(self, name, path=None, target=None):
        if name != "numpy":
            return None
        sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            add_aliases(module)

        spec.loader.exec_module = exec_module
        return spec


if "numpy" in sys.modules:
    add_aliases(sys.modules["numpy"])
else:
    sys.meta_path.insert(0, _AddAliasesOnImport())
