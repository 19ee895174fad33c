"""Zero-code activation of samplewise-rnnt inside NeMo and ESPnet (a post-import hook).

The package installs ``samplewise_rnnt_hook.pth`` into site-packages. Python runs it at every interpreter
start-up (also in the processes the toolkits start themselves: Lightning's re-executed DDP ranks, ESPnet's
spawned workers); it imports this module, which only puts a small finder on ``sys.meta_path``. It imports
neither torch nor a toolkit, and does nothing else until a toolkit module below is imported. Right after
that module has executed, the finder runs the package's registration for it:

=================================  =============================================================
toolkit module (once executed)     registration
=================================  =============================================================
``nemo.collections.asr``           ``import samplewise_rnnt.nemo``: ``loss_name: samplewise_rnnt``
``espnet2.tasks.asr``              ``model: samplewise_transducer`` among task asr's ``--model`` choices
``espnet2.tasks.asr_transducer``   a ``--model`` option (``espnet`` | ``samplewise_transducer``) for
                                   task asr_transducer
=================================  =============================================================

``nemo.collections.asr`` is the package every NeMo ASR import goes through; it is hooked (not
``...losses.rnnt``) because the registration needs the model classes, which that package's ``__init__``
defines after the losses.

Switch it off with ``SAMPLEWISE_RNNT_AUTOLOAD=0`` (also ``false``, ``no``, ``off``). ``python -S`` (no
site-packages processing) never runs it. Where it is off or absent, ``import samplewise_rnnt.nemo`` or the
``samplewise_rnnt.espnet.*`` entry points activate the package explicitly.

``python -m samplewise_rnnt_hook`` prints whether the hook is armed in this interpreter;
``python -m samplewise_rnnt_hook --write-pth [DIR]`` writes the ``.pth`` file (default: this
interpreter's site-packages); builds and the development set-up use it.
"""
import os
import sys

ENV = "SAMPLEWISE_RNNT_AUTOLOAD"
OFF_VALUES = ("0", "false", "no", "off")
PTH_NAME = "samplewise_rnnt_hook.pth"
# one line; site.py executes lines that start with "import". A missing module is silently ignored.
PTH_LINE = 'import sys; exec("try:\\n import samplewise_rnnt_hook\\nexcept ImportError:\\n pass")\n'

#: toolkit module -> (our module, function) run right after the toolkit module has executed
TARGETS = {
    "nemo.collections.asr": ("samplewise_rnnt.nemo", "install"),
    "espnet2.tasks.asr": ("samplewise_rnnt.espnet", "register"),
    "espnet2.tasks.asr_transducer": ("samplewise_rnnt.espnet.transducer_model", "install"),
}
#: what a user should know when a registration fails (printed once per toolkit module)
_WHAT = {
    "nemo.collections.asr": "loss_name: samplewise_rnnt",
    "espnet2.tasks.asr": "model: samplewise_transducer (task asr)",
    "espnet2.tasks.asr_transducer": "model: samplewise_transducer (task asr_transducer)",
}

#: toolkit module -> "ok" or the error text of its registration (for diagnostics and error messages)
results = {}


def enabled(environ=None) -> bool:
    """Whether the environment leaves the hook on (``SAMPLEWISE_RNNT_AUTOLOAD`` unset or not 0/false/no/off)."""
    value = (os.environ if environ is None else environ).get(ENV, "1")
    return value.strip().lower() not in OFF_VALUES


def _run(name):
    if name in results:
        return
    modname, func = TARGETS[name]
    mod = sys.modules.get(modname)
    if mod is not None and getattr(getattr(mod, "__spec__", None), "_initializing", False):
        # our module is importing the toolkit itself: it registers at the end of its own import
        results[name] = "ok (registered by " + modname + ")"
        return
    results[name] = "running"
    try:
        import importlib

        getattr(importlib.import_module(modname), func)()
        results[name] = "ok"
    except Exception as exc:  # never break the toolkit's own import
        results[name] = f"{type(exc).__name__}: {exc}"
        sys.stderr.write(
            f"samplewise_rnnt: could not register {_WHAT[name]} after {name} was imported "
            f"({results[name]}). Configs that select the sample-wise loss will fail; "
            f"`python -c 'import {modname}'` shows the full error. Set {ENV}=0 to skip this hook.\n")


class _HookLoader:
    """Wraps the toolkit module's own loader: executes the module, then runs the registration."""

    def __init__(self, loader, name):
        self._loader = loader
        self._name = name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _run(self._name)

    def __getattr__(self, attr):  # get_source, get_resource_reader, is_package, ...
        return getattr(self._loader, attr)


class PostImportFinder:
    """A ``sys.meta_path`` finder that only answers for the modules in :data:`TARGETS`: it asks the
    finders after it for the real spec and wraps the spec's loader (:class:`_HookLoader`)."""

    def __init__(self):
        self._busy = set()

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in TARGETS or fullname in self._busy or fullname in results:
            return None
        self._busy.add(fullname)
        try:
            spec = None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        finally:
            self._busy.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        spec.loader = _HookLoader(spec.loader, fullname)
        return spec

    def invalidate_caches(self):
        pass


def armed() -> bool:
    """Whether a :class:`PostImportFinder` is on ``sys.meta_path`` in this interpreter."""
    return any(type(f).__name__ == "PostImportFinder" for f in sys.meta_path)


def arm() -> bool:
    """Put the finder on ``sys.meta_path`` (idempotent) unless switched off; returns whether it is armed.

    Toolkit modules imported before arming are registered at once."""
    if not enabled():
        return False
    if not armed():
        sys.meta_path.insert(0, PostImportFinder())
    for name in TARGETS:
        if name in sys.modules:
            _run(name)
    return True


def pth_dir():
    import sysconfig

    return sysconfig.get_paths()["purelib"]


def write_pth(directory=None) -> str:
    """Write :data:`PTH_NAME` into ``directory`` (default: site-packages) unless it is there already."""
    path = os.path.join(directory or pth_dir(), PTH_NAME)
    try:
        with open(path) as f:
            if f.read() == PTH_LINE:
                return path
    except OSError:
        pass
    with open(path, "w") as f:
        f.write(PTH_LINE)
    return path


def _main(argv):
    if argv[:1] == ["--write-pth"]:
        print("wrote", write_pth(argv[1] if len(argv) > 1 else None))
        return 0
    if argv:
        print("usage: python -m samplewise_rnnt_hook [--write-pth [DIR]]", file=sys.stderr)
        return 2
    pth = os.path.join(pth_dir(), PTH_NAME)
    print(f"{PTH_NAME} in site-packages: {'yes' if os.path.exists(pth) else 'no'} ({pth})")
    print(f"{ENV}: {os.environ.get(ENV, '<unset>')} -> hook {'on' if enabled() else 'off'}")
    print(f"armed at start-up in this interpreter: {'yes' if armed() else 'no'}"
          + ("" if armed() or not enabled() else " (python -S, or the .pth file is missing)"))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
else:
    try:
        arm()
    except Exception:  # never break interpreter start-up
        pass
